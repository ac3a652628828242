// The chat world in a browser. It connects to ws(s)://<this host>/ws and speaks the frames of
// docs/PROTOCOL.md through the codec generated from proto/ (PROTOCOL, encodeFrame,
// decodeFrames), which the server puts before this script.
//
// Elements, by id (tests drive the page by them):
//   #status        connection, in words; data-state: connecting | connected (welcomed, not
//                  logged in) | online (logged in) | closed (lost; reconnecting) | offline
//   #latency       round trip of the last ping       #reconnect   reconnect now
//   #user          who is logged in                  #logout      log out (forgets the token)
//   #error         the last error in words (#error-text), data-code: its ErrorCode name;
//                  #error-close hides it
//   #login-panel   shown while logged out: #login-name, #login-password, #guest, #login,
//                  #register, #resume (with the token saved from the last login)
//   #chat          shown while logged in
//   #room-name     a room's name, joined with #join  #list-rooms   asks for the room list
//   #rooms         the room list: li[data-room] with .name, .count ("members/capacity"), a
//                  .join button
//   #tabs          a button[data-view] per view: a room's name, or "@whispers"
//   #hint          shown while no view is open
//   #messages      a .view[data-view] per view, the current one shown. Lines: .line.chat
//                  (.history: replayed on join), .line.presence, .line.whisper, .line.info;
//                  each with .time, .from, .text
//   #members       the current room's members: li[data-user] with .name and a .whisper button
//   #member-count  "members / capacity"              #leave       leaves the current room
//   #input, #send  says in the current room; "/w name text" whispers, "/join room",
//                  "/leave", "/list"
//
// Resuming (docs/PROTOCOL.md, "Resuming a session"): every login asks to be resumable. The
// page then counts the frames it receives after S2C_AuthResult and the requests it sends
// after the login request, keeps each request (but pings) until a pong's `processed` covers
// it, and pings with `received` about every second while frames arrive (every IDLE_PING_MS
// otherwise). When the socket closes, or stalls (a ping unanswered for STALL_MS), it connects
// again and sends C2S_SessionResume before anything else: on S2C_SessionResumed the missed
// frames follow, the kept requests the server had not processed are sent again, and the rooms
// are not joined again; what the user sends meanwhile waits for the session to come back. On
// SESSION_LOST (or any refusal) it logs in again as after any lost connection, and says that
// lines may have been missed. The session token lives in this page's memory only: it is the
// session of this page's views, which a reload or another tab does not have (they log in
// afresh), and a secret that need not outlive the page.
(function () {
  "use strict";

  var PING_MS = 20000; // the server closes a connection silent for 60 s
  var ACK_MS = 1000; // a resumable session acknowledges what it received about this often
  var IDLE_PING_MS = 5000; // and pings at least this often, so that a stalled link shows
  var STALL_MS = 5000; // a resumable session's ping unanswered this long: the link stalled
  var MAX_KEPT = 500; // requests kept until processed; past either bound the session is
  var MAX_KEPT_BYTES = 512 * 1024; // no longer resumed (and the page logs in again instead)
  var MAX_BACKOFF_MS = 30000;
  var MAX_LINES = 500; // per view
  var WHISPERS = "@whispers"; // a view key no room name can take
  var STORE = "world-chat:" + location.host; // the saved token, per server origin
  var NAME = /^[A-Za-z0-9_.-]{3,32}$/;
  var ROOM = /^[A-Za-z0-9_.-]{1,64}$/;

  // Every ErrorCode of the protocol, in words; the server's reason follows.
  var ERRORS = {
    BAD_REQUEST: "The server refused the request",
    NOT_AUTHENTICATED: "Log in first",
    ALREADY_AUTHENTICATED: "You are logged in already",
    REPLACED: "This name was logged in elsewhere",
    INVALID_CREDENTIALS: "Wrong name or password",
    USERNAME_TAKEN: "This name is taken",
    INVALID_TOKEN: "The saved login has expired or was revoked: log in again",
    USER_OFFLINE: "Nobody is logged in with that name",
    ROOM_FULL: "Room is full",
    NOT_IN_ROOM: "You are not in that room",
    RATE_LIMITED: "Too many requests: slow down",
    SERVER_FULL: "The server is full: try again later",
    INTERNAL: "The server failed: try again",
    TOO_MANY_CONNECTIONS: "Too many connections from your address",
    LOGIN_TIMEOUT: "You did not log in in time",
    UNAVAILABLE: "The server's database is away for a moment; try again in a few seconds",
    SESSION_LOST: "The session could not be taken back after the lost connection"
  };

  var LOGIN_IDS = {};
  ["C2S_Register", "C2S_Login", "C2S_Resume"].forEach(function (name) {
    LOGIN_IDS[PROTOCOL.messages["world." + name].id] = true;
  });
  var SESSION_RESUME_ID = PROTOCOL.messages["world.C2S_SessionResume"].id;

  var ws = null; // the socket, while open or opening
  var welcome = null; // its S2C_Welcome
  var me = null; // the S2C_AuthResult of the login
  var again = null; // how to log in again after a reconnect: {name} (a guest) or {token}
  var pending = null; // what to send once connected
  var lastError = null; // the last S2C_Error's code name on this connection
  var retries = 0;
  var retryTimer = null;
  var pingTimer = null;
  var seq = 0;
  var lastPing = { at: 0, seq: 0, answered: true }; // the last ping on this connection
  var maxPacket = 0; // the server's max_packet_size, kept while reconnecting
  // The resumable session, from the login request on: {token ("" until S2C_AuthResult),
  // received (frames), fresh (frames but pongs since the last ping), sent (requests),
  // kept ([{n, frame}]: requests not known to be processed, pings aside), keptBytes,
  // resuming (the connection is lost; since: when; asked: when C2S_SessionResume went out)}.
  var session = null;
  var counting = false; // this connection's frames are the session's, numbered
  var rooms = new Map(); // name -> {members, capacity, joined, seen, last, view, tab}; last: the newest line's server_time_us
  var views = new Map(); // view key -> {view, tab, unread}
  var current = null; // the key of the view shown
  var wanted = new Set(); // rooms the user asked to join, shown when joined

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function nowUs() {
    return Date.now() * 1000;
  }

  function clock(us) {
    var d = us ? new Date(Number(us) / 1000) : new Date();
    return d.toTimeString().slice(0, 5);
  }

  // ---- status and errors ----

  function setStatus(state, text) {
    var status = $("status");
    status.dataset.state = state;
    status.textContent = text;
    $("reconnect").hidden = state !== "closed" && state !== "offline";
  }

  function errorText(code, reason) {
    var name = PROTOCOL.enumName("world.ErrorCode", code);
    var text = (name && ERRORS[name]) || "The request failed (error " + code + ")";
    return reason ? text + ": " + reason : text;
  }

  function showError(text, code) {
    $("error-text").textContent = text;
    $("error").dataset.code = code || "";
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").dataset.code = "";
  }

  function saved() {
    try {
      var value = JSON.parse(localStorage.getItem(STORE) || "null");
      return value && typeof value.token === "string" ? value : null;
    } catch (e) {
      return null;
    }
  }

  function save(value) {
    try {
      if (value) localStorage.setItem(STORE, JSON.stringify(value));
      else localStorage.removeItem(STORE);
    } catch (e) {
      // Storage may be off (private mode, a file: page): the login works, only not resumed.
    }
    showPanels();
  }

  // ---- the connection ----

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (ws) return;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    var socket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      return setStatus("offline", "Cannot connect to " + url + ": " + e.message);
    }
    socket.binaryType = "arraybuffer";
    ws = socket;
    lastError = null;
    var opened = false;
    setStatus("connecting", "Connecting to " + location.host + "…");
    socket.onopen = function () {
      opened = true;
    };
    socket.onmessage = function (event) {
      if (socket === ws) receive(event.data);
    };
    socket.onclose = function (event) {
      if (socket === ws) closed(event, opened);
    };
  }

  function closed(event, opened) {
    ws = null;
    welcome = null;
    counting = false;
    clearInterval(pingTimer);
    var why = closeReason(event, opened);
    if (session && session.token && lastError !== "REPLACED") {
      // The session waits on the server: take it back on a new connection, rooms and all.
      if (!session.resuming) {
        session.resuming = true;
        session.since = Date.now();
      }
      session.asked = 0;
      return reconnectLater(why, "Resuming the session");
    }
    forget();
    me = null;
    rooms.forEach(function (room, name) {
      if (room.joined && again) addLine(name, "info", "", "Disconnected; you will rejoin when the connection is back.");
      room.joined = false;
      room.tab.classList.add("away");
    });
    if (lastError === "REPLACED") {
      // Reconnecting would take the name back from the other session: the user decides.
      showPanels();
      return setStatus("offline", why + ". Reconnect to take it back.");
    }
    if (lastError === "LOGIN_TIMEOUT" && !again) {
      showPanels();
      return setStatus("offline", why + ". Logging in connects again.");
    }
    showPanels();
    reconnectLater(why, "Reconnecting");
  }

  function reconnectLater(why, doing) {
    var delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, retries));
    delay = Math.round(delay * (0.5 + Math.random() / 2));
    retries++;
    retryTimer = setTimeout(connect, delay);
    setStatus("closed", why + ". " + doing + " in " + Math.ceil(delay / 1000) + " s…");
  }

  // No pong for STALL_MS on a resumable session: the link is as good as lost. The server may
  // not know yet; the resume on a new connection takes the session over from this one.
  function stalled() {
    var socket = ws;
    closed({ stalled: true }, true);
    try {
      socket.close();
    } catch (e) {
      // Closing a socket that failed already: nothing to do.
    }
  }

  function closeReason(event, opened) {
    if (event.stalled) return "The connection stalled (no answer for " + STALL_MS / 1000 + " s)";
    if (lastError === "REPLACED" || lastError === "SERVER_FULL" ||
        lastError === "TOO_MANY_CONNECTIONS" || lastError === "LOGIN_TIMEOUT") {
      return ERRORS[lastError];
    }
    if (!opened) return "Cannot reach the server at " + location.host;
    var words = {
      1000: "The server closed the connection",
      1001: "The server is going away (stopping or restarting)",
      1002: "The server closed the connection: the page broke the protocol",
      1003: "The server closed the connection: it does not take this kind of data",
      1006: "The connection was lost",
      1007: "The server closed the connection: a message it could not read",
      1008: "The server closed the connection (policy)",
      1009: "The server closed the connection: a message was too big",
      1011: "The server closed the connection: it failed",
      1012: "The server is restarting",
      1013: "The server is overloaded: try again later"
    }[event.code] || "The connection closed (code " + event.code + ")";
    return event.reason ? words + ": " + event.reason : words;
  }

  // Sends `name` with `msg` as one frame; false (and says why) when it cannot. While a
  // resumable session is away, the request waits (kept) for it to come back.
  function send(name, msg) {
    var away = !!(session && session.resuming);
    if (!away && (!ws || ws.readyState !== WebSocket.OPEN || !welcome)) {
      showError("Not connected to the server: wait for the connection to come back");
      return false;
    }
    var frame;
    try {
      frame = encodeFrame(name, msg);
    } catch (e) {
      showError("Cannot send " + name + ": " + e.message);
      return false;
    }
    if (maxPacket && frame.length > maxPacket) {
      showError("Too long: the server takes messages of at most " + maxPacket + " bytes");
      return false;
    }
    if (session && !count(name, frame)) {
      if (away) {
        showError("Not connected, and too much waits to be sent: wait for the connection to come back");
        return false;
      }
      // Too much unanswered: this session is not resumed; a lost connection logs in again.
      forget();
    }
    if (!away) ws.send(frame);
    return true;
  }

  // Numbers a request of the session and keeps it (a ping aside) till the server processed
  // it; false past the bounds.
  function count(name, frame) {
    if (name !== "C2S_Ping") {
      if (session.kept.length >= MAX_KEPT || session.keptBytes + frame.length > MAX_KEPT_BYTES) return false;
      session.kept.push({ n: session.sent + 1, frame: frame });
      session.keptBytes += frame.length;
    }
    session.sent++;
    return true;
  }

  // Lets go of the kept requests the server has processed.
  function processed(upTo) {
    while (session.kept.length && session.kept[0].n <= upTo) {
      session.keptBytes -= session.kept.shift().frame.length;
    }
  }

  // Sends a login request asking for a resumable session; the count starts behind it.
  function sendLogin(name, msg) {
    msg.resumable = true;
    if (!send(name, msg)) return false;
    session = { token: "", received: 0, fresh: 0, sent: 0, kept: [], keptBytes: 0, resuming: false, since: 0, asked: 0 };
    counting = false;
    return true;
  }

  // The session is not to be resumed (ended, refused, or never was).
  function forget() {
    session = null;
    counting = false;
  }

  // Runs `action` once connected and welcomed; connects when needed.
  function whenConnected(action) {
    if (ws && welcome) return action();
    pending = action;
    retries = 0;
    connect();
  }

  function receive(data) {
    var frames;
    try {
      if (!(data instanceof ArrayBuffer)) throw new Error("a text message");
      frames = decodeFrames(new Uint8Array(data));
    } catch (e) {
      showError("The server sent what this page cannot read (" + e.message + "); reconnecting");
      forget(); // a replay would bring the same bytes again: log in again instead
      return ws.close();
    }
    frames.forEach(function (frame) {
      if (counting) {
        session.received++;
        if (frame.name !== "S2C_Pong") session.fresh++;
      }
      var handle = frame.name && HANDLERS[frame.name];
      if (handle) handle(frame.msg); // an id this page does not know is skipped
    });
  }

  function startPing() {
    clearInterval(pingTimer);
    lastPing = { at: Date.now(), seq: 0, answered: true };
    pingTimer = setInterval(pingTick, ACK_MS);
  }

  // A resumable session pings once a second while frames arrive or requests wait for their
  // answer (and every IDLE_PING_MS regardless), one ping at a time; any other connection
  // every PING_MS, to stay open.
  function pingTick() {
    if (!ws || !welcome) return;
    var now = Date.now();
    if (session && session.resuming) {
      // Nothing goes out before the answer to C2S_SessionResume, which may stall too.
      if (session.asked && now - session.asked > STALL_MS) stalled();
      return;
    }
    if (counting && !lastPing.answered) {
      if (now - lastPing.at > STALL_MS) stalled();
      return;
    }
    var due = now - lastPing.at >= (counting ? IDLE_PING_MS : PING_MS);
    if (due || (counting && (session.fresh > 0 || session.kept.length > 0))) ping();
  }

  function ping() {
    var msg = { seq: ++seq, client_time_us: nowUs() };
    if (counting) {
      msg.received = session.received;
      session.fresh = 0;
    }
    if (send("C2S_Ping", msg)) lastPing = { at: Date.now(), seq: seq, answered: false };
  }

  // ---- what the server sends ----

  var HANDLERS = {
    S2C_Welcome: function (msg) {
      welcome = msg;
      maxPacket = msg.max_packet_size || 0;
      retries = 0;
      startPing();
      if (session && session.resuming) {
        // Nothing else goes out before the answer; this request is not one of the session's.
        setStatus("connecting", "Connected to " + (msg.server_name || location.host) + ", resuming the session…");
        ws.send(encodeFrame("C2S_SessionResume", { session_token: session.token, received: session.received }));
        session.asked = Date.now();
        return;
      }
      setStatus("connected", "Connected to " + (msg.server_name || location.host) + ", not logged in");
      if (pending) {
        var action = pending;
        pending = null;
        action();
      } else if (again) {
        logInAgain();
      }
    },

    S2C_AuthResult: function (msg) {
      me = msg;
      if (session && msg.session_token) {
        session.token = msg.session_token;
        session.received = 0;
        counting = true;
      } else {
        forget(); // the server keeps no sessions: a lost connection logs in again
      }
      again = msg.token ? { token: msg.token } : { name: msg.username };
      if (msg.token) save({ username: msg.username, token: msg.token });
      hideError();
      $("user").textContent = msg.username + (msg.guest ? " (guest)" : "");
      setStatus("online", "Online on " + welcome.server_name);
      showPanels();
      send("C2S_RoomList", {});
      rooms.forEach(function (room, name) {
        // Only what was said since the last line this page has (the server says when some
        // of it is gone).
        send("C2S_RoomJoin", { room: name, since_us: room.last || 0 });
      });
    },

    S2C_SessionResumed: function (msg) {
      if (!session || !session.resuming) {
        // Logged out while the answer was on its way: end the session for good.
        ws.send(encodeFrame("C2S_Logout", {}));
        return;
      }
      var away = Math.max(1, Math.round((Date.now() - session.since) / 1000));
      session.resuming = false;
      session.asked = 0;
      counting = true; // the missed frames follow, numbered on from `received`
      me = { username: msg.username, user_id: msg.user_id, guest: msg.guest, token: me ? me.token : "" };
      // The requests the server did not process go again, in order, numbered after it.
      processed(Number(msg.processed));
      session.sent = Number(msg.processed);
      session.kept.forEach(function (request) {
        request.n = ++session.sent;
        ws.send(request.frame);
      });
      hideError();
      setStatus("online", "Online on " + welcome.server_name + " (the session resumed)");
      showPanels();
      views.forEach(function (v, key) {
        addLine(key, "info", "", "Connection lost for " + away + " s and resumed: nothing was missed.");
      });
    },

    S2C_Error: function (msg) {
      var name = PROTOCOL.enumName("world.ErrorCode", msg.code) || String(msg.code);
      lastError = name;
      if (msg.request_id === SESSION_RESUME_ID) return resumeFailed(msg);
      if (LOGIN_IDS[msg.request_id]) {
        forget();
        if (name === "INVALID_TOKEN") {
          save(null);
          again = null;
        }
        if (!me) {
          again = null; // a failed login after a reconnect: the user logs in again
          showPanels();
        }
      }
      if (name === "LOGIN_TIMEOUT" && !me) return; // said in the status when the socket closes
      showError(errorText(msg.code, msg.reason), name);
    },

    S2C_RoomJoined: function (msg) {
      var room = rooms.get(msg.room);
      if (!room) {
        room = addRoom(msg.room);
        addLine(msg.room, "info", "", "You joined " + msg.room + ".");
      } else if (!room.joined) {
        addLine(msg.room, "info", "", "Back in " + msg.room + ".");
      }
      room.joined = true;
      room.members = msg.members.slice().sort();
      room.capacity = msg.capacity;
      room.tab.classList.remove("away");
      if (wanted.delete(msg.room) || current === null) select(msg.room);
      else if (current === msg.room) showMembers();
      send("C2S_RoomList", {});
    },

    S2C_RoomLeft: function (msg) {
      removeRoom(msg.room);
      send("C2S_RoomList", {});
    },

    S2C_RoomList: function (msg) {
      var list = $("rooms");
      list.textContent = "";
      if (msg.rooms.length === 0) list.appendChild(el("li", "empty", "No room has members"));
      msg.rooms.forEach(function (info) {
        var li = el("li");
        li.dataset.room = info.name;
        li.appendChild(el("span", "name", info.name));
        li.appendChild(el("span", "count", info.members + "/" + info.capacity));
        var button = el("button", "join", "Join");
        button.type = "button";
        button.onclick = function () {
          join(info.name);
        };
        li.appendChild(button);
        list.appendChild(li);
      });
    },

    S2C_RoomPresence: function (msg) {
      var room = rooms.get(msg.room);
      if (!room) return;
      var at = room.members.indexOf(msg.username);
      if (msg.joined && at < 0) {
        room.members.push(msg.username);
        room.members.sort();
      } else if (!msg.joined && at >= 0) {
        room.members.splice(at, 1);
      }
      addLine(msg.room, "presence", "", msg.username + (msg.joined ? " joined" : " left"));
      if (current === msg.room) showMembers();
    },

    S2C_RoomMissed: function (msg) {
      if (!rooms.get(msg.room)) return;
      addLine(msg.room, "presence", "", "some lines said in this room did not reach you");
    },

    S2C_Chat: function (msg) {
      var room = rooms.get(msg.room);
      if (!room) return;
      if (msg.server_time_us > (room.last || 0)) room.last = msg.server_time_us;
      var key = msg.server_time_us + " " + msg.from + " " + msg.content;
      if (msg.history && room.seen.has(key)) return; // replayed again after a reconnect
      room.seen.add(key);
      var line = addLine(msg.room, msg.history ? "chat history" : "chat", msg.from, msg.content, msg.server_time_us);
      if (msg.history) {
        var tag = el("span", "tag", "history");
        tag.title = "said before you joined";
        line.insertBefore(tag, line.firstChild.nextSibling);
      }
    },

    S2C_Whisper: function (msg) {
      openView(WHISPERS, "Whispers");
      var mine = me && msg.from === me.username;
      var who = mine ? "to " + msg.to : msg.from + " → " + msg.to;
      addLine(WHISPERS, "whisper", who, msg.content);
      if (current === null) select(WHISPERS);
    },

    S2C_Pong: function (msg) {
      if (counting) processed(Number(msg.processed));
      if (msg.seq !== lastPing.seq || lastPing.answered) return; // a replayed, older one
      lastPing.answered = true;
      var ms = Math.max(0, Math.round((nowUs() - Number(msg.client_time_us)) / 1000));
      $("latency").textContent = "round trip " + ms + " ms";
    }
  };

  // The session could not be taken back (SESSION_LOST, or refused): log in again, as after
  // any lost connection, and rejoin the rooms; what was said meanwhile may be missing.
  function resumeFailed(msg) {
    forget();
    me = null;
    var why = errorText(msg.code, msg.reason);
    rooms.forEach(function (room, name) {
      room.joined = false;
      room.tab.classList.add("away");
      addLine(name, "info", "", why + ". Logging in again: some lines may have been missed.");
    });
    if (again) {
      setStatus("connected", "Connected to " + welcome.server_name + ", logging in again");
      logInAgain();
    } else {
      showPanels();
      setStatus("connected", "Connected to " + welcome.server_name + ", not logged in");
      showError(why);
    }
  }

  function logInAgain() {
    sendLogin(again.token ? "C2S_Resume" : "C2S_Login", again.token ? { token: again.token } : { username: again.name });
  }

  // ---- views: a room's, or the whispers' ----

  function openView(key, title) {
    var v = views.get(key);
    if (v) return v;
    var view = el("section", "view");
    view.dataset.view = key;
    view.hidden = true;
    var tab = el("button");
    tab.type = "button";
    tab.dataset.view = key;
    tab.appendChild(el("span", "title", title));
    tab.appendChild(el("span", "unread"));
    tab.onclick = function () {
      select(key);
    };
    $("messages").appendChild(view);
    $("tabs").appendChild(tab);
    v = { view: view, tab: tab, unread: 0 };
    views.set(key, v);
    return v;
  }

  function addRoom(name) {
    var v = openView(name, name);
    var room = { members: [], capacity: 0, joined: false, seen: new Set(), view: v.view, tab: v.tab };
    rooms.set(name, room);
    return room;
  }

  function removeRoom(name) {
    var v = views.get(name);
    if (v) {
      v.view.remove();
      v.tab.remove();
    }
    views.delete(name);
    rooms.delete(name);
    if (current === name) select(views.size ? views.keys().next().value : null);
  }

  function select(key) {
    current = key;
    views.forEach(function (v, k) {
      v.view.hidden = k !== key;
      v.tab.classList.toggle("current", k === key);
      if (k === key) {
        v.unread = 0;
        v.tab.lastChild.textContent = "";
      }
    });
    $("hint").hidden = views.size > 0;
    showMembers();
    var box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  // Appends a line to the view `key`; returns it.
  function addLine(key, kind, from, text, timeUs) {
    var v = views.get(key);
    if (!v) return null;
    var box = $("messages");
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
    var line = el("div", "line " + kind);
    line.appendChild(el("span", "time", clock(timeUs)));
    if (from) line.appendChild(el("span", "from", from));
    line.appendChild(el("span", "text", text));
    v.view.appendChild(line);
    while (v.view.childElementCount > MAX_LINES) v.view.firstChild.remove();
    if (key !== current && kind !== "info") {
      v.unread++;
      v.tab.lastChild.textContent = "(" + v.unread + ")";
    } else if (atBottom) {
      box.scrollTop = box.scrollHeight;
    }
    return line;
  }

  function showMembers() {
    var list = $("members");
    list.textContent = "";
    var room = current === null ? null : rooms.get(current);
    $("leave").disabled = !room;
    $("member-count").textContent = room ? room.members.length + " / " + room.capacity : "";
    if (!room) return;
    room.members.forEach(function (name) {
      var li = el("li");
      li.dataset.user = name;
      var isMe = me && name === me.username;
      li.appendChild(el("span", "name", isMe ? name + " (you)" : name));
      if (!isMe) {
        var button = el("button", "whisper", "whisper");
        button.type = "button";
        button.title = "Whisper to " + name;
        button.onclick = function () {
          $("input").value = "/w " + name + " ";
          $("input").focus();
        };
        li.appendChild(button);
      }
      list.appendChild(li);
    });
  }

  // The chat while logged in, or about to log in again after a reconnect; else the login.
  function showPanels() {
    var inside = !!(me || again);
    $("login-panel").hidden = inside;
    $("chat").hidden = !inside;
    $("logout").hidden = !inside;
    if (!inside) $("user").textContent = "";
    var token = saved();
    $("resume").hidden = inside || !token;
    if (token) $("resume").textContent = "Resume as " + token.username;
  }

  // ---- what the user does ----

  function logIn(kind) {
    var name = $("login-name").value.trim();
    var password = $("login-password").value;
    var request;
    if (kind === "resume") {
      var token = saved();
      if (!token) return showError("No saved login on this browser");
      request = ["C2S_Resume", { token: token.token }];
    } else {
      if (!NAME.test(name)) return showError("A name is 3-32 letters, digits, _ . or -");
      if (kind === "guest") {
        request = ["C2S_Login", { username: name }];
      } else {
        if (!password) return showError("Enter your password (8-128 characters), or play as a guest");
        request = [kind === "register" ? "C2S_Register" : "C2S_Login", { username: name, password: password }];
      }
    }
    hideError();
    whenConnected(function () {
      if (sendLogin(request[0], request[1])) $("login-password").value = "";
    });
  }

  function logOut() {
    if (me && !(session && session.resuming)) send("C2S_Logout", {});
    forget();
    me = null;
    again = null;
    save(null);
    Array.from(views.keys()).forEach(function (key) {
      removeRoom(key);
    });
    if (welcome) setStatus("connected", "Logged out; connected to " + welcome.server_name);
  }

  function join(name) {
    if (!ROOM.test(name)) return showError("A room name is 1-64 letters, digits, _ . or -");
    if (rooms.has(name) && rooms.get(name).joined) return select(name);
    wanted.add(name);
    send("C2S_RoomJoin", { room: name });
  }

  function leave() {
    var room = current === null ? null : rooms.get(current);
    if (!room) return;
    if (room.joined) send("C2S_RoomLeave", { room: current });
    else removeRoom(current);
  }

  function say() {
    var input = $("input");
    var text = input.value;
    if (!text.trim()) return;
    var m = /^\/(?:w|whisper|msg)\s+(\S+)\s+([\s\S]+)$/.exec(text);
    var done;
    if (m) {
      done = send("C2S_Whisper", { to: m[1], content: m[2], sent_at_us: nowUs() });
    } else if ((m = /^\/join\s+(\S+)\s*$/.exec(text))) {
      done = true;
      join(m[1]);
    } else if (/^\/leave\s*$/.test(text)) {
      done = true;
      leave();
    } else if (/^\/list\s*$/.test(text)) {
      done = send("C2S_RoomList", {});
    } else if (text[0] === "/") {
      return showError("Commands: /w name text (whisper), /join room, /leave, /list");
    } else if (current === null || current === WHISPERS) {
      return showError("Join a room to chat, or whisper with /w name text");
    } else if (!rooms.get(current).joined) {
      return showError("You are not in " + current + " at the moment");
    } else {
      done = send("C2S_Chat", { room: current, content: text, sent_at_us: nowUs() });
    }
    if (done) input.value = "";
  }

  function submit(id, action) {
    $(id).addEventListener("submit", function (event) {
      event.preventDefault();
      action();
    });
  }

  submit("login-panel", function () {
    logIn($("login-password").value ? "login" : "guest");
  });
  $("guest").onclick = function () {
    logIn("guest");
  };
  $("register").onclick = function () {
    logIn("register");
  };
  $("resume").onclick = function () {
    logIn("resume");
  };
  $("logout").onclick = logOut;
  $("reconnect").onclick = function () {
    retries = 0;
    connect();
  };
  $("error-close").onclick = hideError;
  $("list-rooms").onclick = function () {
    send("C2S_RoomList", {});
  };
  submit("join-form", function () {
    join($("room-name").value.trim());
    $("room-name").value = "";
  });
  $("leave").onclick = leave;
  submit("send-form", say);

  showPanels();
  select(null);
  connect();
})();
