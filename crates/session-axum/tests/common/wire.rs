//! A keep-alive HTTP/1.1 client for apps served on a real loopback socket
//! (by this process or by a child process), built on hyper's client
//! connection: the tests that count acknowledged writes need to see every
//! connection error, which the in-process `send` cannot produce.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What the server answered.
#[derive(Debug)]
pub struct WireReply {
    pub status: StatusCode,
    /// `name=value` of each `Set-Cookie` that sets a value (a removal,
    /// `Max-Age=0`, shows as `None` in `removed`).
    pub cookies: Vec<String>,
    /// Whether a `Set-Cookie` removed a cookie.
    pub removed: bool,
    pub headers: HeaderMap,
    pub body: String,
}

impl WireReply {
    /// The reply as the in-process `send` gives it.
    pub fn into_reply(self) -> super::Reply {
        super::Reply { status: self.status, headers: self.headers, body: self.body }
    }
}

/// Why a request has no reply: the connection failed or timed out. The
/// request may or may not have reached the app.
#[derive(Debug)]
pub struct WireError(pub String);

/// One keep-alive connection to `127.0.0.1:port`; reconnects after a failure.
pub struct WireClient {
    port: u16,
    timeout: Duration,
    sender: Option<SendRequest<Body>>,
}

impl WireClient {
    pub fn new(port: u16, timeout: Duration) -> Self {
        Self { port, timeout, sender: None }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, WireError> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| WireError(format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| WireError(format!("handshake: {e}")))?;
        // The connection task ends with the connection; its error shows up
        // on the request that was using it.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// `GET path` with `cookie` (`name=value`), within the timeout.
    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> Result<WireReply, WireError> {
        let result = tokio::time::timeout(self.timeout, self.exchange(path, cookie)).await;
        let outcome = result.unwrap_or_else(|_| Err(WireError("timed out".to_owned())));
        if outcome.is_err() {
            self.sender = None;
        }
        outcome
    }

    async fn exchange(&mut self, path: &str, cookie: Option<&str>) -> Result<WireReply, WireError> {
        let mut sender = match self.sender.take() {
            Some(sender) if sender.is_ready() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| WireError(format!("ready: {e}")))?;
        let mut request = Request::get(path).header(header::HOST, "127.0.0.1");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::empty()).map_err(|e| WireError(e.to_string()))?;
        let response =
            sender.send_request(request).await.map_err(|e| WireError(format!("send: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut cookies = Vec::new();
        let mut removed = false;
        for value in response.headers().get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap_or_default();
            if value.contains("Max-Age=0") {
                removed = true;
            } else if let Some(pair) = value.split(';').next() {
                cookies.push(pair.trim().to_owned());
            }
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| WireError(format!("body: {e}")))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(WireReply {
            status,
            headers,
            cookies,
            removed,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
