//! Quickstart: a visit counter kept in a session.
//!
//! ```text
//! cargo run -p quickstart          # serves http://127.0.0.1:3000 (PORT to change)
//! curl -c jar -b jar 127.0.0.1:3000/       # 1, 2, 3, ...
//! curl -c jar -b jar 127.0.0.1:3000/peek   # the count, unchanged
//! ```

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::routing::get;
use session_axum::core::SpawnCleanup;
use session_axum::memory::MemoryStore;
use session_axum::{Session, SessionError, SessionLayer};

/// Counts this session's visits. The lock makes concurrent requests of one
/// session count every visit exactly once.
async fn visit(session: Session) -> Result<String, SessionError> {
    let locked = session.lock().await?;
    let visits = locked.get::<u64>("visits").await?.unwrap_or(0) + 1;
    locked.insert("visits", visits).await?;
    Ok(visits.to_string())
}

/// The count so far, without counting this request.
async fn peek(session: Session) -> Result<String, SessionError> {
    Ok(session.get::<u64>("visits").await?.unwrap_or(0).to_string())
}

fn app(store: MemoryStore) -> Router {
    // `Secure` cookies are kept by browsers on http://localhost, and curl sends
    // them to 127.0.0.1; behind TLS nothing changes.
    let sessions = SessionLayer::new(store);
    Router::new().route("/", get(visit)).route("/peek", get(peek)).layer(sessions)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port:?} is not a port: {e}"))?,
        Err(_) => 3000,
    };
    let store = MemoryStore::new();
    let cleanup = store.spawn_cleanup(std::time::Duration::from_secs(60));

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!("quickstart listening on http://{address}");
    axum::serve(listener, app(store))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    cleanup.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
        let mut request = axum::http::Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .map(|value| value.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), set_cookie)
    }

    #[tokio::test]
    async fn counts_visits_and_peeks_without_counting() {
        let app = app(MemoryStore::new());
        let (first, cookie) = get(&app, "/", None).await;
        assert_eq!(first, "1");
        let cookie = cookie.unwrap();
        assert_eq!(get(&app, "/", Some(&cookie)).await.0, "2");
        assert_eq!(get(&app, "/peek", Some(&cookie)).await.0, "2");
        assert_eq!(get(&app, "/peek", Some(&cookie)).await.0, "2");
        assert_eq!(get(&app, "/", Some(&cookie)).await.0, "3");
        assert_eq!(get(&app, "/peek", None).await, ("0".to_owned(), None));
    }
}
