// Protobuf (proto3) and frame codec for the browser, driven by the message table that
// protocol-build generates from the .proto files and appends after this runtime
// (`PROTOCOL.define({...})`). A plain script: no modules, no build step; put it before the
// script that uses it. It defines the global PROTOCOL and the functions encodeFrame and
// decodeFrames. Loading it twice (the engine's table, then a game's) keeps one PROTOCOL.
//
//   PROTOCOL.messages              "world.S2C_Chat" -> {name, id, fields: [{number, name,
//                                  type, kind: "scalar" | "enum" | "message", repeated,
//                                  packed (only when false), optional (has presence)}]}
//   PROTOCOL.enums                 "world.ErrorCode" -> {name, values: {BAD_REQUEST: 1, ...}}
//   PROTOCOL.ids                   message id -> full name ("world.S2C_Chat")
//   PROTOCOL.encode(type, obj)     the protobuf payload of obj, a Uint8Array
//   PROTOCOL.decode(type, bytes)   the message in bytes, every field present (proto3 defaults)
//   encodeFrame(name, obj)         one frame: u16 LE size (header included), u16 LE id, payload
//   decodeFrames(bytes)            every frame in bytes: [{name, id, msg}]; throws on a partial
//                                  frame; an id no message has gives {name: null, id, msg: null}
//   PROTOCOL.enumName(enum, n)     "ROOM_FULL" for ("ErrorCode", 9); undefined when unknown
//   PROTOCOL.enumValue(enum, name) 9 for ("ErrorCode", "ROOM_FULL")
//   PROTOCOL.define(table)         adds a generated table
//
// A type is named in full ("world.S2C_Chat") or, where no other type has it, alone
// ("S2C_Chat"). 64-bit integers decode to a Number when they fit in Number.MAX_SAFE_INTEGER,
// to a BigInt otherwise; they encode from a Number, a BigInt or a decimal string. Enums decode
// to their number (an enum is open: a number without a name is kept) and encode from a number
// or a value name. Fields at their proto3 default are left out of an encoding; a field the
// table does not know is an error on encode and skipped on decode.
var PROTOCOL = (typeof PROTOCOL === "object" && PROTOCOL) || (function () {
  "use strict";

  var TWO_32 = 4294967296;
  var MAX_FRAME = 65535;
  var HEADER = 4;
  var utf8Encoder = new TextEncoder();
  var utf8Decoder = new TextDecoder("utf-8", { fatal: true });

  var P = { messages: {}, enums: {}, ids: {} };
  var shortNames = { messages: {}, enums: {} }; // short name -> full name, null when shared
  var fieldIndex = {}; // full message name -> {number -> field}

  // Wire type of each scalar type.
  var WIRE = {
    int32: 0, int64: 0, uint32: 0, uint64: 0, sint32: 0, sint64: 0, bool: 0,
    fixed64: 1, sfixed64: 1, double: 1,
    string: 2, bytes: 2,
    fixed32: 5, sfixed32: 5, float: 5
  };

  function fail(what) {
    throw new Error("protocol: " + what);
  }

  function resolve(table, kind, name) {
    if (Object.prototype.hasOwnProperty.call(table, name)) return name;
    var full = shortNames[kind === "enum" ? "enums" : "messages"][name];
    if (full === null) fail(kind + " name " + name + " is ambiguous: give the package too");
    if (full !== undefined && Object.prototype.hasOwnProperty.call(table, full)) return full;
    fail("no " + kind + " " + name);
  }

  function message(name) {
    return P.messages[resolve(P.messages, "message", name)];
  }

  function enumType(name) {
    return P.enums[resolve(P.enums, "enum", name)];
  }

  function fieldsByNumber(full) {
    var index = fieldIndex[full];
    if (!index) {
      index = {};
      P.messages[full].fields.forEach(function (f) { index[f.number] = f; });
      fieldIndex[full] = index;
    }
    return index;
  }

  function wireOf(f) {
    return f.kind === "scalar" ? WIRE[f.type] : f.kind === "enum" ? 0 : 2;
  }

  function packable(f) {
    return f.repeated && wireOf(f) !== 2;
  }

  // ---- writing ----

  function Writer() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  Writer.prototype.reserve = function (n) {
    if (this.len + n <= this.buf.length) return;
    var size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    var bigger = new Uint8Array(size);
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  };

  Writer.prototype.byte = function (b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  };

  Writer.prototype.bytes = function (bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  };

  // A varint of the 64-bit value hi * 2^32 + lo (both unsigned 32-bit).
  Writer.prototype.varint = function (lo, hi) {
    while (hi !== 0 || lo > 127) {
      this.byte((lo & 127) | 128);
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi = hi >>> 7;
    }
    this.byte(lo);
  };

  Writer.prototype.fixed32 = function (lo) {
    this.reserve(4);
    new DataView(this.buf.buffer).setUint32(this.len, lo >>> 0, true);
    this.len += 4;
  };

  Writer.prototype.tag = function (number, wire) {
    this.varint(((number << 3) | wire) >>> 0, 0);
  };

  Writer.prototype.finish = function () {
    return this.buf.slice(0, this.len);
  };

  // [lo, hi] of a 64-bit integer given as a Number, a BigInt or a decimal string.
  function split64(v, signed, what) {
    if (typeof v === "string") {
      if (!/^-?[0-9]+$/.test(v)) fail(what + ": " + JSON.stringify(v) + " is not an integer");
      v = BigInt(v);
    }
    if (typeof v === "bigint") {
      var min = signed ? -(BigInt(2) ** BigInt(63)) : BigInt(0);
      var max = (signed ? BigInt(2) ** BigInt(63) : BigInt(2) ** BigInt(64)) - BigInt(1);
      if (v < min || v > max) fail(what + ": " + v + " is out of range");
      var u = BigInt.asUintN(64, v);
      return [Number(u % BigInt(TWO_32)), Number(u / BigInt(TWO_32))];
    }
    if (typeof v !== "number" || !Number.isInteger(v)) fail(what + ": " + String(v) + " is not an integer");
    if (v >= 0) {
      if (v >= (signed ? TWO_32 * TWO_32 / 2 : TWO_32 * TWO_32)) fail(what + ": " + v + " is out of range");
      return [v % TWO_32 >>> 0, Math.floor(v / TWO_32) >>> 0];
    }
    if (!signed || v < -TWO_32 * TWO_32 / 2) fail(what + ": " + v + " is out of range");
    var lo = (-v) % TWO_32 >>> 0;
    var hi = Math.floor(-v / TWO_32) >>> 0;
    // Two's complement of the magnitude.
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    return [lo, hi];
  }

  function int32Of(v, min, max, what) {
    if (typeof v === "bigint") v = Number(v);
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      fail(what + ": " + String(v) + " is not an integer in " + min + ".." + max);
    }
    return v;
  }

  function enumNumber(f, v, what) {
    if (typeof v === "string") {
      var values = enumType(f.type).values;
      if (!Object.prototype.hasOwnProperty.call(values, v)) fail(what + ": " + f.type + " has no value " + v);
      return values[v];
    }
    return int32Of(v, -2147483648, 2147483647, what);
  }

  function isDefault(f, v) {
    if (v === undefined || v === null) return true;
    if (f.optional) return false;
    if (f.kind === "message") return false;
    if (f.kind === "enum") return v === 0 || (typeof v === "string" && enumValueOf(f.type, v) === 0);
    switch (f.type) {
      case "string": return v === "";
      case "bytes": return v.length === 0;
      case "bool": return v === false;
      default: return v == 0; // Number, BigInt or decimal string
    }
  }

  function enumValueOf(type, name) {
    var values = enumType(type).values;
    return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : undefined;
  }

  function bytesOf(v, what) {
    if (v instanceof Uint8Array) return v;
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (Array.isArray(v)) return Uint8Array.from(v);
    fail(what + ": expected bytes (a Uint8Array)");
  }

  // Writes one value of f (no tag) in its wire format.
  function writeValue(w, f, v, what) {
    if (f.kind === "enum") {
      var n = enumNumber(f, v, what);
      return w.varint(n >>> 0, n < 0 ? 0xffffffff : 0);
    }
    var parts;
    switch (f.type) {
      case "string":
        if (typeof v !== "string") fail(what + ": expected a string");
        var text = utf8Encoder.encode(v);
        w.varint(text.length, 0);
        return w.bytes(text);
      case "bytes":
        var bytes = bytesOf(v, what);
        w.varint(bytes.length, 0);
        return w.bytes(bytes);
      case "bool":
        if (typeof v !== "boolean") fail(what + ": expected true or false");
        return w.byte(v ? 1 : 0);
      case "int32":
        var i = int32Of(v, -2147483648, 2147483647, what);
        return w.varint(i >>> 0, i < 0 ? 0xffffffff : 0);
      case "uint32":
        return w.varint(int32Of(v, 0, 4294967295, what), 0);
      case "sint32":
        var s = int32Of(v, -2147483648, 2147483647, what);
        return w.varint(((s << 1) ^ (s >> 31)) >>> 0, 0);
      case "int64":
        parts = split64(v, true, what);
        return w.varint(parts[0], parts[1]);
      case "uint64":
        parts = split64(v, false, what);
        return w.varint(parts[0], parts[1]);
      case "sint64":
        parts = split64(v, true, what);
        var sign = parts[1] >> 31; // 0 or -1
        var lo = ((parts[0] << 1) ^ sign) >>> 0;
        var hi = (((parts[1] << 1) | (parts[0] >>> 31)) ^ sign) >>> 0;
        return w.varint(lo, hi);
      case "fixed32":
        return w.fixed32(int32Of(v, 0, 4294967295, what));
      case "sfixed32":
        return w.fixed32(int32Of(v, -2147483648, 2147483647, what) >>> 0);
      case "fixed64":
      case "sfixed64":
        parts = split64(v, f.type === "sfixed64", what);
        w.fixed32(parts[0]);
        return w.fixed32(parts[1]);
      case "float":
      case "double":
        if (typeof v !== "number") fail(what + ": expected a number");
        var size = f.type === "float" ? 4 : 8;
        w.reserve(size);
        var view = new DataView(w.buf.buffer);
        if (size === 4) view.setFloat32(w.len, v, true);
        else view.setFloat64(w.len, v, true);
        w.len += size;
        return;
    }
    fail(what + ": unknown type " + f.type);
  }

  function writeMessage(w, full, obj) {
    var desc = P.messages[full];
    if (obj === null || typeof obj !== "object") fail(desc.name + ": expected an object");
    for (var key in obj) {
      if (Object.prototype.hasOwnProperty.call(obj, key) && !desc.fields.some(function (f) { return f.name === key; })) {
        fail(desc.name + " has no field " + key);
      }
    }
    desc.fields.forEach(function (f) {
      var v = obj[f.name];
      var what = desc.name + "." + f.name;
      if (f.repeated) {
        if (v === undefined || v === null) return;
        if (!Array.isArray(v)) fail(what + ": expected an array");
        if (v.length === 0) return;
        if (packable(f) && f.packed !== false) {
          var inner = new Writer();
          v.forEach(function (item) { writeValue(inner, f, item, what); });
          w.tag(f.number, 2);
          w.varint(inner.len, 0);
          return w.bytes(inner.buf.subarray(0, inner.len));
        }
        return v.forEach(function (item) { writeField(w, f, item, what); });
      }
      if (!isDefault(f, v)) writeField(w, f, v, what);
    });
  }

  function writeField(w, f, v, what) {
    if (f.kind === "message") {
      var inner = new Writer();
      writeMessage(inner, resolve(P.messages, "message", f.type), v);
      w.tag(f.number, 2);
      w.varint(inner.len, 0);
      return w.bytes(inner.buf.subarray(0, inner.len));
    }
    w.tag(f.number, wireOf(f));
    writeValue(w, f, v, what);
  }

  // ---- reading ----

  function Reader(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  // A varint as [lo, hi], both unsigned 32-bit.
  Reader.prototype.varint = function () {
    var lo = 0, hi = 0;
    for (var i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) fail("truncated varint");
      var b = this.buf[this.pos++];
      if (i < 4) lo |= (b & 127) << (7 * i);
      else if (i === 4) {
        lo |= (b & 15) << 28;
        hi |= (b & 127) >>> 4;
      } else hi |= (b & 127) << (7 * i - 32);
      if (b < 128) return [lo >>> 0, hi >>> 0];
    }
    fail("varint longer than 10 bytes");
  };

  Reader.prototype.take = function (n) {
    if (n > this.buf.length - this.pos) fail("truncated: " + n + " bytes wanted, " + (this.buf.length - this.pos) + " left");
    var start = this.pos;
    this.pos += n;
    return this.buf.subarray(start, this.pos);
  };

  Reader.prototype.length = function () {
    var v = this.varint();
    if (v[1] !== 0) fail("length too large");
    return v[0];
  };

  function unsigned64(lo, hi) {
    if (hi <= 0x1fffff) return hi * TWO_32 + lo;
    return BigInt(hi) * BigInt(TWO_32) + BigInt(lo);
  }

  function signed64(lo, hi) {
    if ((hi & 0x80000000) === 0) return unsigned64(lo, hi);
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    return -unsigned64(lo, hi);
  }

  function readValue(r, f) {
    var v;
    if (f.kind === "enum") return r.varint()[0] | 0;
    switch (f.type) {
      case "string":
        try {
          return utf8Decoder.decode(r.take(r.length()));
        } catch (e) {
          if (e instanceof TypeError) fail(f.name + ": invalid UTF-8");
          throw e;
        }
      case "bytes": return r.take(r.length()).slice();
      case "bool": v = r.varint(); return v[0] !== 0 || v[1] !== 0;
      case "int32": return r.varint()[0] | 0;
      case "uint32": return r.varint()[0];
      case "sint32": v = r.varint()[0]; return (v >>> 1) ^ -(v & 1);
      case "int64": v = r.varint(); return signed64(v[0], v[1]);
      case "uint64": v = r.varint(); return unsigned64(v[0], v[1]);
      case "sint64":
        v = r.varint();
        var sign = -(v[0] & 1);
        return signed64((((v[0] >>> 1) | (v[1] << 31)) ^ sign) >>> 0, ((v[1] >>> 1) ^ sign) >>> 0);
      case "fixed32": r.take(4); return r.view.getUint32(r.pos - 4, true);
      case "sfixed32": r.take(4); return r.view.getInt32(r.pos - 4, true);
      case "float": r.take(4); return r.view.getFloat32(r.pos - 4, true);
      case "double": r.take(8); return r.view.getFloat64(r.pos - 8, true);
      case "fixed64":
      case "sfixed64":
        r.take(8);
        var lo = r.view.getUint32(r.pos - 8, true), hi = r.view.getUint32(r.pos - 4, true);
        return f.type === "fixed64" ? unsigned64(lo, hi) : signed64(lo, hi);
    }
    fail(f.name + ": unknown type " + f.type);
  }

  function defaultOf(f) {
    if (f.repeated) return [];
    if (f.kind === "message") return null;
    if (f.kind === "enum") return 0;
    switch (f.type) {
      case "string": return "";
      case "bytes": return new Uint8Array(0);
      case "bool": return false;
      default: return 0;
    }
  }

  function skip(r, wire, number) {
    switch (wire) {
      case 0: return r.varint();
      case 1: return r.take(8);
      case 2: return r.take(r.length());
      case 5: return r.take(4);
      case 3:
        for (;;) {
          var key = r.varint()[0];
          if ((key & 7) === 4) {
            if (key >>> 3 !== number) fail("unbalanced group");
            return;
          }
          skip(r, key & 7, key >>> 3);
        }
    }
    fail("wire type " + wire + " of field " + number);
  }

  function readMessage(full, r, into) {
    var desc = P.messages[full];
    var obj = into;
    if (!obj) {
      obj = {};
      desc.fields.forEach(function (f) {
        if (!f.optional) obj[f.name] = defaultOf(f);
      });
    }
    var byNumber = fieldsByNumber(full);
    while (r.pos < r.buf.length) {
      var key = r.varint();
      if (key[1] !== 0) fail(desc.name + ": field number too large");
      var number = key[0] >>> 3, wire = key[0] & 7;
      if (number === 0) fail(desc.name + ": field number 0");
      var f = byNumber[number];
      if (!f) {
        skip(r, wire, number);
        continue;
      }
      if (f.repeated && wire === 2 && packable(f)) {
        var packed = new Reader(r.take(r.length()));
        while (packed.pos < packed.buf.length) obj[f.name].push(readValue(packed, f));
        continue;
      }
      if (wire !== wireOf(f)) fail(desc.name + "." + f.name + ": wire type " + wire + ", expected " + wireOf(f));
      var v;
      if (f.kind === "message") {
        var type = resolve(P.messages, "message", f.type);
        var inner = new Reader(r.take(r.length()));
        // A message field seen twice is merged, as protobuf says.
        v = readMessage(type, inner, f.repeated ? null : obj[f.name]);
      } else {
        v = readValue(r, f);
      }
      if (f.repeated) obj[f.name].push(v);
      else obj[f.name] = v;
    }
    return obj;
  }

  function u8(bytes) {
    if (bytes instanceof Uint8Array) return bytes;
    if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
    if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (Array.isArray(bytes)) return Uint8Array.from(bytes);
    fail("expected a Uint8Array or an ArrayBuffer");
  }

  // ---- the API ----

  P.encode = function (type, obj) {
    var w = new Writer();
    writeMessage(w, resolve(P.messages, "message", type), obj || {});
    return w.finish();
  };

  P.decode = function (type, bytes) {
    return readMessage(resolve(P.messages, "message", type), new Reader(u8(bytes)), null);
  };

  P.encodeFrame = function (name, obj) {
    var desc = message(name);
    if (typeof desc.id !== "number") fail(desc.name + " has no message id");
    var payload = P.encode(name, obj);
    var size = HEADER + payload.length;
    if (size > MAX_FRAME) fail(desc.name + " needs a " + size + "-byte frame, more than " + MAX_FRAME);
    var frame = new Uint8Array(size);
    frame[0] = size & 255;
    frame[1] = size >>> 8;
    frame[2] = desc.id & 255;
    frame[3] = desc.id >>> 8;
    frame.set(payload, HEADER);
    return frame;
  };

  P.decodeFrames = function (bytes) {
    var buf = u8(bytes);
    var frames = [];
    var pos = 0;
    while (pos < buf.length) {
      var left = buf.length - pos;
      if (left < HEADER) fail("partial frame: " + left + " bytes of a " + HEADER + "-byte header");
      var size = buf[pos] | (buf[pos + 1] << 8);
      var id = buf[pos + 2] | (buf[pos + 3] << 8);
      if (size < HEADER) fail("frame size " + size + " is smaller than the header");
      if (size > left) fail("partial frame: id " + id + " needs " + size + " bytes, " + left + " left");
      var full = P.ids[id];
      var payload = buf.subarray(pos + HEADER, pos + size);
      if (full === undefined) frames.push({ name: null, id: id, msg: null });
      else frames.push({ name: P.messages[full].name, id: id, msg: readMessage(full, new Reader(payload), null) });
      pos += size;
    }
    return frames;
  };

  P.enumName = function (type, number) {
    var values = enumType(type).values;
    for (var name in values) {
      if (values[name] === number) return name;
    }
    return undefined;
  };

  P.enumValue = function (type, name) {
    return enumValueOf(type, name);
  };

  P.define = function (table) {
    var kinds = [["messages", table.messages || {}], ["enums", table.enums || {}]];
    kinds.forEach(function (kind) {
      for (var full in kind[1]) {
        var desc = kind[1][full];
        if (kind[0] === "messages" && typeof desc.id === "number") {
          var other = P.ids[desc.id];
          if (other !== undefined && other !== full) fail("message id " + desc.id + " of " + full + " is " + other + "'s");
          P.ids[desc.id] = full;
        }
        P[kind[0]][full] = desc;
        delete fieldIndex[full];
        var names = shortNames[kind[0]];
        if (names[desc.name] !== undefined && names[desc.name] !== full) names[desc.name] = null;
        else names[desc.name] = full;
      }
    });
  };

  return P;
})();

function encodeFrame(name, msg) {
  return PROTOCOL.encodeFrame(name, msg);
}

function decodeFrames(bytes) {
  return PROTOCOL.decodeFrames(bytes);
}
