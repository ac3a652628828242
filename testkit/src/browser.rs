//! Headless Chromium for tests of web pages, driven over the Chrome DevTools Protocol.
//!
//! [`Browser::launch`] starts Debian's `chromium` (or `chromium-browser`) headless, with a
//! fresh profile in a temporary directory, and talks to it over `--remote-debugging-pipe`:
//! Chromium reads commands on its file descriptor 3 and writes answers and events on its
//! descriptor 4, each message one JSON object ended by a NUL byte. A reader thread takes the
//! answers to the callers waiting for them and keeps, per page, what the page's console said
//! (warnings, errors, uncaught exceptions). Where Chromium is not installed, `launch` gives the
//! reason instead, to skip the test in one line.
//!
//! Everything blocks (std threads and channels, no async runtime): an async test calls it
//! through `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! let browser = testkit::browser::Browser::launch().expect("chromium");
//! let page = browser.new_page("data:text/html,<p id=x>hi</p>").unwrap();
//! assert_eq!(page.eval("document.getElementById('x').textContent").unwrap(), "hi");
//! assert!(page.console().is_empty());
//! ```
//!
//! Chromium and its helper processes are killed when the [`Browser`] is dropped (they run in a
//! process group of their own), and when the test process ends, however it ends: Chromium
//! leaves when its pipe closes, and gets a parent-death signal from the thread that started
//! it, which lives as long as the process.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What a test prints when it skips for want of Chromium.
pub const NO_CHROMIUM: &str = "needs Debian's chromium (apt-get install chromium)";

/// How long one DevTools command may take before it fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The flags Chromium runs with (as root in a container: no sandbox).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
];

/// The Chromium executable: `chromium` or `chromium-browser` on the `PATH`; `Err` says what to
/// install.
pub fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_executable(&path, &["chromium", "chromium-browser"]).ok_or_else(|| NO_CHROMIUM.to_string())
}

/// The first of `names` that is an executable file in a directory of `path` (a `PATH` value).
fn find_executable(path: &std::ffi::OsStr, names: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    names.iter().find_map(|name| {
        std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|file| {
                std::fs::metadata(file)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

/// A headless Chromium this process started.
pub struct Browser {
    link: Arc<Link>,
    child: Child,
    /// The temporary directory: the profile (`profile/`) and Chromium's stderr (`stderr.log`).
    dir: PathBuf,
}

/// A tab of a [`Browser`], attached to (its own DevTools session).
pub struct Page {
    link: Arc<Link>,
    session: String,
    target: String,
}

/// The DevTools connection: the pipe Chromium reads, and what the reader thread shares.
struct Link {
    to_chrome: Mutex<std::io::PipeWriter>,
    next_id: AtomicU64,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// Commands waiting for their answer, by id.
    waiting: HashMap<u64, mpsc::Sender<Result<Value, String>>>,
    /// Console lines by DevTools session (page).
    console: HashMap<String, Vec<String>>,
    /// Why the pipe from Chromium ended, once it has.
    closed: Option<String>,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and waits until it answers.
    pub fn launch() -> Result<Browser, String> {
        let exe = chromium()?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "world-chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("profile"))
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        let stderr = File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let browser = Browser::start(&exe, &dir, stderr);
        if browser.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        browser
    }

    fn start(exe: &Path, dir: &Path, stderr: File) -> Result<Browser, String> {
        let (chrome_reads, to_chrome) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (from_chrome, chrome_writes) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (read_fd, write_fd) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let mut command = Command::new(exe);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // SAFETY: between fork and exec the closure calls only async-signal-safe functions
        // (fcntl, dup2, setpgid, prctl) and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // Out of the way of 3 and 4 first (either may be 3 or 4 already), then in place;
                // dup2 leaves the copies open across exec.
                let read = cvt(libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10))?;
                let write = cvt(libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10))?;
                cvt(libc::dup2(read, 3))?;
                cvt(libc::dup2(write, 4))?;
                // A group of its own, so that its helpers are killed with it.
                cvt(libc::setpgid(0, 0))?;
                cvt(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                Ok(())
            });
        }
        let child = spawn_from_lasting_thread(command)
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        // Chromium's ends, closed here so that either side sees the other leave.
        drop((chrome_reads, chrome_writes));

        let shared = Arc::new(Mutex::new(Shared::default()));
        let reader_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("chromium-devtools".into())
            .spawn(move || read_devtools(from_chrome, &reader_shared))
            .map_err(|e| format!("cannot start the DevTools reader: {e}"))?;
        let browser = Browser {
            link: Arc::new(Link {
                to_chrome: Mutex::new(to_chrome),
                next_id: AtomicU64::new(1),
                shared,
            }),
            child,
            dir: dir.to_path_buf(),
        };
        match browser.link.call(None, "Browser.getVersion", json!({})) {
            Ok(_) => Ok(browser),
            Err(e) => {
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} did not answer: {e}; stderr: {}",
                    exe.display(),
                    tail.join(" | ")
                ))
            }
        }
    }

    /// The product and version, e.g. `Chrome/156.0.8078.114`.
    pub fn version(&self) -> Result<String, String> {
        let version = self.link.call(None, "Browser.getVersion", json!({}))?;
        Ok(version["product"].as_str().unwrap_or_default().to_string())
    }

    /// A new tab, with its console recorded, that has loaded `url`.
    pub fn new_page(&self, url: &str) -> Result<Page, String> {
        let created =
            self.link
                .call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = created["targetId"]
            .as_str()
            .ok_or("Target.createTarget gave no targetId")?
            .to_string();
        let attached = self.link.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget gave no sessionId")?
            .to_string();
        lock(&self.link.shared)
            .console
            .insert(session.clone(), Vec::new());
        let page = Page {
            link: Arc::clone(&self.link),
            session,
            target,
        };
        for domain in ["Runtime", "Log", "Page"] {
            page.call(&format!("{domain}.enable"), json!({}))?;
        }
        if url != "about:blank" {
            page.navigate(url)?;
        }
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.link.notify(None, "Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its helpers too: the group that Chromium leads.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory effects; the group is the one this child leads.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper may still be writing to the profile for a moment.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Page {
    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.link.call(Some(&self.session), method, params)
    }

    /// Loads `url` in this tab and waits until it has loaded (its `load` event).
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        // The new document will not have this mark: it tells the old one from the new.
        self.eval("window.__testkitOldDocument = true")?;
        let navigated = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = navigated["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("{url}: {error}"));
        }
        self.wait_for(
            "!window.__testkitOldDocument && document.readyState === 'complete'",
            COMMAND_TIMEOUT,
        )
        .map(drop)
        .map_err(|e| format!("{url} did not load: {e}"))
    }

    /// The value of the JavaScript expression `js` in the page (a promise is awaited), as
    /// JSON; `undefined` is `null`, and a value JSON cannot hold (a BigInt, `NaN`) is its
    /// text, such as `"12n"`. A thrown exception is an `Err` with its description.
    pub fn eval(&self, js: &str) -> Result<Value, String> {
        let answer = self.call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "returnByValue": true,
                "awaitPromise": true,
                "userGesture": true,
            }),
        )?;
        evaluation(&answer)
    }

    /// Evaluates `js` every 50 ms until its value is truthy, and returns that value; `Err`
    /// after `timeout`, with the last value or exception.
    pub fn wait_for(&self, js: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.eval(js);
            if let Ok(value) = &last {
                if truthy(value) {
                    return last;
                }
            }
            if Instant::now() >= deadline {
                let last = match last {
                    Ok(value) => format!("last value {value}"),
                    Err(error) => format!("last error {error}"),
                };
                return Err(format!("{js}: not true within {timeout:?} ({last})"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the page's console said so far that a page should not say: `console.warn`,
    /// `console.error` and failed `console.assert` calls, uncaught exceptions, and the
    /// browser's own warnings and errors (a failed load, a refused connection), one line each.
    pub fn console(&self) -> Vec<String> {
        lock(&self.link.shared)
            .console
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.link.notify(
            None,
            "Target.closeTarget",
            json!({ "targetId": self.target }),
        );
        lock(&self.link.shared).console.remove(&self.session);
    }
}

impl Link {
    /// Sends a command and waits for its answer (at most [`COMMAND_TIMEOUT`]).
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut shared = lock(&self.shared);
            if let Some(why) = &shared.closed {
                return Err(format!("{method}: {why}"));
            }
            shared.waiting.insert(id, tx);
        }
        if let Err(e) = self.write(id, session, method, params) {
            lock(&self.shared).waiting.remove(&id);
            return Err(format!("{method}: cannot write to chromium: {e}"));
        }
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(answer) => answer.map_err(|e| format!("{method}: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.shared).waiting.remove(&id);
                Err(format!("{method}: no answer within {COMMAND_TIMEOUT:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let why = lock(&self.shared).closed.clone().unwrap_or_default();
                Err(format!("{method}: {why}"))
            }
        }
    }

    /// Sends a command without waiting for its answer (which the reader drops).
    fn notify(&self, session: Option<&str>, method: &str, params: Value) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.write(id, session, method, params);
    }

    fn write(
        &self,
        id: u64,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> std::io::Result<()> {
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        let mut pipe = self
            .to_chrome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pipe.write_all(&bytes)?;
        pipe.flush()
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panicking test thread must not take the browser down with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reader thread: answers to their callers, console events to their page, until the pipe
/// ends; then every caller still waiting gets an error.
fn read_devtools(mut from_chrome: std::io::PipeReader, shared: &Mutex<Shared>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let why = loop {
        match from_chrome.read(&mut chunk) {
            Ok(0) => break "chromium closed the DevTools pipe".to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break format!("reading the DevTools pipe failed: {e}"),
        }
        for message in split_messages(&mut buf) {
            match serde_json::from_slice::<Value>(&message) {
                Ok(message) => dispatch(shared, &message),
                Err(e) => {
                    let mut shared = lock(shared);
                    for lines in shared.console.values_mut() {
                        lines.push(format!("testkit: unreadable DevTools message: {e}"));
                    }
                }
            }
        }
    };
    let mut shared = lock(shared);
    shared.closed = Some(why);
    shared.waiting.clear(); // their receivers see the disconnection
}

/// Takes every whole (NUL-terminated) message out of the front of `buf`.
fn split_messages(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut start = 0;
    while let Some(end) = buf[start..].iter().position(|&b| b == 0) {
        messages.push(buf[start..start + end].to_vec());
        start += end + 1;
    }
    buf.drain(..start);
    messages
}

fn dispatch(shared: &Mutex<Shared>, message: &Value) {
    let mut shared = lock(shared);
    if let Some(id) = message["id"].as_u64() {
        if let Some(waiter) = shared.waiting.remove(&id) {
            let answer = match message.get("error") {
                Some(error) => Err(error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| error.to_string())),
                None => Ok(message["result"].clone()),
            };
            let _ = waiter.send(answer);
        }
        return;
    }
    let (Some(method), Some(session)) = (message["method"].as_str(), message["sessionId"].as_str())
    else {
        return;
    };
    if let Some(line) = console_line(method, &message["params"]) {
        if let Some(lines) = shared.console.get_mut(session) {
            lines.push(line);
        }
    }
}

/// The console line of a DevTools event, for the events and levels [`Page::console`] keeps.
fn console_line(method: &str, params: &Value) -> Option<String> {
    match method {
        "Runtime.consoleAPICalled" => {
            let kind = params["type"].as_str().unwrap_or_default();
            if !matches!(kind, "warning" | "error" | "assert") {
                return None;
            }
            let args: Vec<String> = params["args"]
                .as_array()
                .map(|args| args.iter().map(remote_object_text).collect())
                .unwrap_or_default();
            let frame = &params["stackTrace"]["callFrames"][0];
            Some(format!(
                "console.{kind}: {}{}",
                args.join(" "),
                location(&frame["url"], &frame["lineNumber"])
            ))
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("an exception");
            Some(format!(
                "uncaught: {text}{}",
                location(&details["url"], &details["lineNumber"])
            ))
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            let level = entry["level"].as_str().unwrap_or_default();
            if !matches!(level, "warning" | "error") {
                return None;
            }
            Some(format!(
                "{} {level}: {}{}",
                entry["source"].as_str().unwrap_or("browser"),
                entry["text"].as_str().unwrap_or_default(),
                location(&entry["url"], &entry["lineNumber"])
            ))
        }
        _ => None,
    }
}

/// ` (url:line)`, or nothing without a url; DevTools counts lines from 0.
fn location(url: &Value, line: &Value) -> String {
    match (url.as_str().filter(|u| !u.is_empty()), line.as_u64()) {
        (Some(url), Some(line)) => format!(" ({url}:{})", line + 1),
        (Some(url), None) => format!(" ({url})"),
        _ => String::new(),
    }
}

/// The text of a DevTools `RemoteObject`: its value, or its description.
fn remote_object_text(object: &Value) -> String {
    match &object["value"] {
        Value::String(text) => text.clone(),
        Value::Null => object["unserializableValue"]
            .as_str()
            .or_else(|| object["description"].as_str())
            .unwrap_or(object["type"].as_str().unwrap_or("undefined"))
            .to_string(),
        value => value.to_string(),
    }
}

/// The value of a `Runtime.evaluate` answer, or its exception.
fn evaluation(answer: &Value) -> Result<Value, String> {
    if let Some(details) = answer.get("exceptionDetails") {
        let text = details["exception"]["description"]
            .as_str()
            .or_else(|| details["text"].as_str())
            .unwrap_or("an exception");
        return Err(text.to_string());
    }
    let result = &answer["result"];
    if let Some(value) = result.get("value") {
        return Ok(value.clone());
    }
    if let Some(text) = result["unserializableValue"].as_str() {
        return Ok(Value::String(text.to_string()));
    }
    Ok(Value::Null)
}

/// JavaScript's truthiness, for a value as JSON.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn cvt(result: libc::c_int) -> std::io::Result<libc::c_int> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Spawns `command` from a thread that lives as long as the process, so that a parent-death
/// signal comes when the process ends, not when the calling thread does (a blocking-pool
/// thread of a test may end while the browser is still in use).
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("chromium-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_at_nul_bytes_and_a_partial_one_waits() {
        let mut buf = b"{\"id\":1}\0{\"id\":2}\0{\"id\"".to_vec();
        let messages = split_messages(&mut buf);
        assert_eq!(messages, [b"{\"id\":1}".to_vec(), b"{\"id\":2}".to_vec()]);
        assert_eq!(buf, b"{\"id\"");
        buf.extend_from_slice(b":3}\0");
        assert_eq!(split_messages(&mut buf), [b"{\"id\":3}".to_vec()]);
        assert!(buf.is_empty());
        assert!(split_messages(&mut buf).is_empty());
    }

    #[test]
    fn answers_reach_their_caller_and_events_their_page() {
        let shared = Mutex::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        lock(&shared).waiting.insert(7, tx);
        lock(&shared).console.insert("S".into(), Vec::new());
        dispatch(&shared, &json!({"id": 7, "result": {"ok": 1}}));
        assert_eq!(rx.recv().unwrap(), Ok(json!({"ok": 1})));
        let (tx, rx) = mpsc::channel();
        lock(&shared).waiting.insert(8, tx);
        dispatch(
            &shared,
            &json!({"id": 8, "error": {"code": -32000, "message": "no such target"}}),
        );
        assert_eq!(rx.recv().unwrap(), Err("no such target".to_string()));
        let warn = json!({"method": "Runtime.consoleAPICalled", "sessionId": "S",
            "params": {"type": "warning", "args": [{"type": "string", "value": "careful"}]}});
        dispatch(&shared, &warn);
        let other = json!({"method": "Runtime.consoleAPICalled", "sessionId": "T",
            "params": {"type": "error", "args": []}});
        dispatch(&shared, &other);
        assert_eq!(lock(&shared).console["S"], ["console.warning: careful"]);
    }

    #[test]
    fn console_keeps_warnings_errors_and_exceptions_only() {
        let call = |kind: &str| {
            console_line(
                "Runtime.consoleAPICalled",
                &json!({"type": kind, "args": [
                    {"type": "string", "value": "n ="},
                    {"type": "number", "value": 3},
                    {"type": "bigint", "unserializableValue": "5n"},
                    {"type": "object", "description": "Object"}
                ], "stackTrace": {"callFrames": [{"url": "http://h/app.js", "lineNumber": 9}]}}),
            )
        };
        assert_eq!(call("log"), None);
        assert_eq!(call("info"), None);
        assert_eq!(
            call("error").unwrap(),
            "console.error: n = 3 5n Object (http://h/app.js:10)"
        );
        assert!(call("warning").unwrap().starts_with("console.warning: "));
        let thrown = console_line(
            "Runtime.exceptionThrown",
            &json!({"exceptionDetails": {"text": "Uncaught", "url": "http://h/app.js",
                "lineNumber": 0, "exception": {"description": "TypeError: x is undefined"}}}),
        );
        assert_eq!(
            thrown.unwrap(),
            "uncaught: TypeError: x is undefined (http://h/app.js:1)"
        );
        let log = |level: &str| {
            console_line(
                "Log.entryAdded",
                &json!({"entry": {"source": "network", "level": level,
                    "text": "Failed to load resource", "url": "http://h/x"}}),
            )
        };
        assert_eq!(
            log("error").unwrap(),
            "network error: Failed to load resource (http://h/x)"
        );
        assert!(log("warning").is_some());
        assert_eq!(log("verbose"), None);
        assert_eq!(log("info"), None);
        assert_eq!(console_line("Page.loadEventFired", &json!({})), None);
    }

    #[test]
    fn an_evaluation_is_its_value_or_its_exception() {
        assert_eq!(
            evaluation(&json!({"result": {"type": "number", "value": 2}})),
            Ok(json!(2))
        );
        assert_eq!(
            evaluation(&json!({"result": {"type": "undefined"}})),
            Ok(Value::Null)
        );
        assert_eq!(
            evaluation(
                &json!({"result": {"type": "bigint", "unserializableValue": "18446744073709551615n"}})
            ),
            Ok(json!("18446744073709551615n"))
        );
        assert_eq!(
            evaluation(
                &json!({"result": {"type": "object"}, "exceptionDetails": {"text": "Uncaught",
                "exception": {"description": "Error: boom\n    at <anonymous>:1:7"}}})
            ),
            Err("Error: boom\n    at <anonymous>:1:7".to_string())
        );
    }

    #[test]
    fn truthiness_is_javascripts() {
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for truthy_value in [json!(true), json!(1), json!("0"), json!([]), json!({})] {
            assert!(truthy(&truthy_value), "{truthy_value}");
        }
    }

    #[test]
    fn without_chromium_on_the_path_the_reason_says_what_to_install() {
        let empty =
            std::env::temp_dir().join(format!("testkit-no-chromium-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(
            find_executable(empty.as_os_str(), &["chromium", "chromium-browser"]),
            None
        );
        // A file that is not executable is not taken either.
        std::fs::write(empty.join("chromium"), "").unwrap();
        assert_eq!(find_executable(empty.as_os_str(), &["chromium"]), None);
        let _ = std::fs::remove_dir_all(&empty);
        assert!(NO_CHROMIUM.contains("apt-get install chromium"));
    }

    /// The whole path through a real Chromium, where one is installed.
    #[test]
    fn a_page_evaluates_waits_and_reports_its_console() {
        let browser = match Browser::launch() {
            Ok(browser) => browser,
            Err(why) => {
                eprintln!("skipped a_page_evaluates_waits_and_reports_its_console: {why}");
                return;
            }
        };
        assert!(browser.version().unwrap().contains('/'));
        let page = browser
            .new_page("data:text/html,<p id=greeting>hello</p>")
            .unwrap();
        assert_eq!(
            page.eval("document.getElementById('greeting').textContent")
                .unwrap(),
            "hello"
        );
        assert_eq!(page.eval("Promise.resolve(40 + 2)").unwrap(), 42);
        assert_eq!(page.eval("2n ** 64n").unwrap(), "18446744073709551616n");
        assert_eq!(page.eval("undefined").unwrap(), Value::Null);
        let thrown = page.eval("throw new Error('boom')").unwrap_err();
        assert!(thrown.contains("boom"), "{thrown}");
        assert!(page.console().is_empty(), "{:?}", page.console());

        page.eval("setTimeout(() => { window.done = 'yes'; }, 100)")
            .unwrap();
        assert_eq!(
            page.wait_for("window.done", Duration::from_secs(5))
                .unwrap(),
            "yes"
        );
        let late = page
            .wait_for("window.never", Duration::from_millis(200))
            .unwrap_err();
        assert!(late.contains("not true within"), "{late}");

        page.eval("console.log('fine'); console.warn('careful'); setTimeout(() => { throw new TypeError('late'); })")
            .unwrap();
        page.wait_for("true", Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let console = page.console();
        assert_eq!(console.len(), 2, "{console:?}");
        assert!(
            console[0].starts_with("console.warning: careful"),
            "{console:?}"
        );
        assert!(console[1].contains("TypeError: late"), "{console:?}");

        // A second page has a console of its own.
        let other = browser.new_page("about:blank").unwrap();
        assert!(other.console().is_empty());
        let dir = browser.dir.clone();
        drop((page, other, browser));
        assert!(!dir.exists(), "the profile is removed");
    }
}
