//! Where a scenario sends its requests: an app in this process, or an app
//! served by another process on a loopback port. Scenarios written against
//! [`Target`] run unchanged between two layer instances in one process and
//! between two server processes sharing a store.

use std::time::Duration;

use axum::Router;

use super::wire::WireClient;
use super::{Reply, send};

/// A request to a served app gives up after this long: far above the
/// layer's own waits, so a test fails on a hang instead of passing it.
const WIRE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub enum Target {
    /// An app in this process, called directly.
    InProcess(Router),
    /// An app another process serves on `127.0.0.1:<port>`.
    Port(u16),
}

impl Target {
    /// `GET path` with `cookies` (each `name=value`).
    pub async fn send(&self, path: &str, cookies: &[&str]) -> Reply {
        match self {
            Self::InProcess(app) => send(app, path, cookies).await,
            Self::Port(port) => {
                let cookie = (!cookies.is_empty()).then(|| cookies.join("; "));
                let mut client = WireClient::new(*port, WIRE_TIMEOUT);
                match client.get(path, cookie.as_deref()).await {
                    Ok(reply) => reply.into_reply(),
                    Err(error) => panic!("GET {path} on port {port}: {}", error.0),
                }
            }
        }
    }
}

impl From<Router> for Target {
    fn from(app: Router) -> Self {
        Self::InProcess(app)
    }
}
