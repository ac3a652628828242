//! Sans-IO HTTP/1.1 heads: just enough for a WebSocket upgrade, a static page and an admin
//! listener. A request head is parsed from a buffer once it is complete (`\r\n\r\n`), at most
//! [`MAX_HEAD`] bytes; a response is written whole. No bodies are read, no keep-alive: every
//! exchange ends the connection.

use std::fmt::Write as _;

/// Bytes of a request or response head at most, its blank line included.
pub const MAX_HEAD: usize = 8 * 1024;

/// Headers in one head at most.
const MAX_HEADERS: usize = 64;

/// A request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without its `?`; empty when none.
    pub query: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Header names (as sent) and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of the first header named `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the comma-separated header `name` has `token` among its values (ignoring case),
    /// as `Connection: keep-alive, Upgrade` has `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    }
}

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The value of the first header named `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a head could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head passed [`MAX_HEAD`] bytes without ending.
    #[error("HTTP head longer than {MAX_HEAD} bytes")]
    TooLong,
    /// The head is not HTTP/1.x as this reader takes it.
    #[error("malformed HTTP head: {0}")]
    Malformed(&'static str),
}

/// Where the head in `buf` ends (the length of the head, blank line included), once it is all
/// there.
pub fn head_len(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) if at + 4 <= MAX_HEAD => Ok(Some(at + 4)),
        Some(_) => Err(HttpError::TooLong),
        None if buf.len() >= MAX_HEAD => Err(HttpError::TooLong),
        None => Ok(None),
    }
}

/// Parses the request head at the start of `buf`: the request and the head's length, or
/// `None` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(len) = head_len(buf)? else {
        return Ok(None);
    };
    let mut lines = head_lines(&buf[..len - 4])?;
    let line = lines
        .next()
        .ok_or(HttpError::Malformed("no request line"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("bad method"));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some((
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            version: version.to_string(),
            headers: parse_headers(lines)?,
        },
        len,
    )))
}

/// Parses the response head at the start of `buf`: the head and its length, or `None` while
/// it is incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let Some(len) = head_len(buf)? else {
        return Ok(None);
    };
    let mut lines = head_lines(&buf[..len - 4])?;
    let line = lines.next().ok_or(HttpError::Malformed("no status line"))?;
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(
            "status line is not VERSION STATUS REASON",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let status = status
        .parse()
        .map_err(|_| HttpError::Malformed("status is not a number"))?;
    Ok(Some((
        ResponseHead {
            status,
            headers: parse_headers(lines)?,
        },
        len,
    )))
}

fn head_lines(head: &[u8]) -> Result<impl Iterator<Item = &str>, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    Ok(text.split("\r\n"))
}

fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::Malformed("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HttpError::Malformed("bad header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(headers)
}

/// The reason phrase of the statuses this crate answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A whole response: the status line, `headers`, `Content-Length`, `Connection: close`, and
/// `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A plain-text error response: `text` and a newline as the body.
pub fn text_response(status: u16, extra: &[(&str, &str)], text: &str) -> Vec<u8> {
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
    headers.extend_from_slice(extra);
    response(status, &headers, format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:7000\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nrest";

    #[test]
    fn a_request_head_parses_with_its_length() {
        let (request, len) = parse_request(UPGRADE).unwrap().unwrap();
        assert_eq!(&UPGRADE[len..], b"rest");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/ws");
        assert_eq!(request.query, "x=1");
        assert_eq!(request.header("host"), Some("127.0.0.1:7000"));
        assert_eq!(request.header("SEC-WEBSOCKET-VERSION"), Some("13"));
        assert!(request.has_token("connection", "upgrade"));
        assert!(!request.has_token("connection", "close"));
    }

    #[test]
    fn an_incomplete_head_waits_at_every_length() {
        let whole = UPGRADE.len() - 4;
        for len in 0..whole {
            assert_eq!(parse_request(&UPGRADE[..len]), Ok(None), "at {len}");
        }
        assert!(parse_request(&UPGRADE[..whole]).unwrap().is_some());
    }

    #[test]
    fn a_head_too_long_is_refused_before_it_ends() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse_request(&long), Err(HttpError::TooLong));
    }

    #[test]
    fn malformed_heads_are_errors_not_panics() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_response_head_parses() {
        let text = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n";
        let (head, len) = parse_response(text).unwrap().unwrap();
        assert_eq!((head.status, len), (101, text.len()));
        assert_eq!(head.header("sec-websocket-accept"), Some("x"));
    }

    #[test]
    fn a_response_carries_its_length_and_closes() {
        let out = text_response(404, &[], "no such page");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 13\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nno such page\n"), "{text}");
    }
}
