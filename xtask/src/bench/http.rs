//! A tiny HTTP/1.1 client, and what xtask does with it itself: the sessions
//! wrk sends, and the lost-update check.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::cmd::{Error, Result};

/// Requests each connection sends in the lost-update check.
pub(super) const LOST_UPDATE_REQUESTS: usize = 100;

#[derive(Debug, Clone, Copy)]
pub(super) struct LostUpdates {
    pub(super) kept: u64,
    pub(super) sent: u64,
    pub(super) failed: u64,
}

/// One keep-alive connection to the server.
pub(super) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Response {
    status: u16,
    /// `name=value` of every `Set-Cookie`, attributes stripped.
    cookies: Vec<String>,
    body: String,
}

impl Conn {
    pub(super) fn open(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| Error::msg(format!("bench: connecting to 127.0.0.1:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        Ok(Self { stream, buf: Vec::with_capacity(1024) })
    }

    fn get(&mut self, path: &str, cookie: Option<&str>) -> Result<Response> {
        let io = |e: std::io::Error| Error::msg(format!("bench: GET {path}: {e}"));
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(cookie) = cookie {
            let _ = write!(request, "Cookie: {cookie}\r\n");
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).map_err(io)?;
        loop {
            if let Some(response) = self.parse(path)? {
                return Ok(response);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(Error::msg(format!("bench: GET {path}: connection closed")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// `GET path`, which must answer 200.
    pub(super) fn get_ok(&mut self, path: &str, cookie: Option<&str>) -> Result<Response> {
        let response = self.get(path, cookie)?;
        if response.status != 200 {
            return Err(Error::msg(format!(
                "bench: GET {path} answered {}: {}",
                response.status, response.body
            )));
        }
        Ok(response)
    }

    /// A complete response from the buffer, if there is one.
    fn parse(&mut self, path: &str) -> Result<Option<Response>> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::msg(format!("bench: GET {path}: bad status line")))?;
        let mut length = 0;
        let mut cookies = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| Error::msg("bench: bad content-length"))?;
            } else if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or_default().trim();
                cookies.push(pair.to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Error::msg(format!(
                    "bench: GET {path}: chunked responses unsupported"
                )));
            }
        }
        let total = end + 4 + length;
        if self.buf.len() < total {
            return Ok(None);
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..total]).into_owned();
        self.buf.drain(..total);
        Ok(Some(Response { status, cookies, body }))
    }
}

impl Response {
    /// The `Cookie:` header value carrying the session this response set.
    pub(super) fn session_cookie(&self) -> Option<String> {
        cookie_header(self)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The `Cookie:` header value that carries the session set by `response`.
fn cookie_header(response: &Response) -> Option<String> {
    let mut jar: Vec<(&str, &str)> = Vec::new();
    for pair in &response.cookies {
        let Some((name, value)) = pair.split_once('=') else { continue };
        jar.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            jar.push((name, value));
        }
    }
    if jar.is_empty() {
        return None;
    }
    Some(jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
}

/// One session per connection, made with `GET /start` before the measured
/// run. Rows without sessions get a cookie of the same size, so every row
/// parses the same request.
pub(super) fn make_sessions(port: u16, count: usize) -> Result<Vec<String>> {
    let mut conn = Conn::open(port)?;
    let mut cookies = Vec::with_capacity(count);
    for i in 0..count {
        let response = conn.get_ok("/start", None)?;
        cookies.push(cookie_header(&response).unwrap_or_else(|| format!("id=nosession{i:011}")));
    }
    Ok(cookies)
}

/// N concurrent increments on one session: `connections` connections send
/// [`LOST_UPDATE_REQUESTS`] requests each, all with the same cookie, then
/// one more request reads the counter.
pub(super) fn lost_updates(port: u16, connections: usize) -> Result<LostUpdates> {
    let mut conn = Conn::open(port)?;
    let start = conn.get("/start", None)?;
    let cookie = cookie_header(&start)
        .ok_or_else(|| Error::msg("bench: GET /start set no session cookie"))?;
    let first: u64 = start.body.trim().parse().map_err(|_| Error::msg("bench: counter?"))?;
    let barrier = Arc::new(Barrier::new(connections));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let cookie = cookie.clone();
            std::thread::spawn(move || -> Result<u64> {
                let mut conn = Conn::open(port)?;
                barrier.wait();
                let mut ok = 0;
                for _ in 0..LOST_UPDATE_REQUESTS {
                    if conn.get("/", Some(&cookie))?.status == 200 {
                        ok += 1;
                    }
                }
                Ok(ok)
            })
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        sent += worker.join().map_err(|_| Error::msg("bench: a load thread panicked"))??;
    }
    let last = conn.get("/", Some(&cookie))?;
    let last: u64 = last.body.trim().parse().map_err(|_| Error::msg("bench: counter?"))?;
    let total = (connections * LOST_UPDATE_REQUESTS) as u64;
    // `last` counts the reading request itself.
    Ok(LostUpdates { kept: last.saturating_sub(first + 1), sent, failed: total - sent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_collected_and_removals_dropped() {
        let response = Response {
            status: 200,
            cookies: vec!["id=old".into(), "id=".into(), "id=new".into(), "n=1".into()],
            body: String::new(),
        };
        assert_eq!(cookie_header(&response).as_deref(), Some("id=new; n=1"));
        let none = Response { status: 200, cookies: Vec::new(), body: String::new() };
        assert_eq!(cookie_header(&none), None);
    }

    #[test]
    fn http_responses_parse_across_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nSet-Cookie: id=abc; Path=/\r\n").unwrap();
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stream.write_all(b"Content-Length: 2\r\n\r\n42").unwrap();
        });
        let mut conn = Conn::open(port).unwrap();
        let response = conn.get("/start", None).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "42");
        assert_eq!(response.cookies, ["id=abc"]);
        server.join().unwrap();
    }
}
