//! `axum-extra-private-cookie`: the counter in an encrypted (AES-GCM) cookie
//! of axum-extra's `PrivateCookieJar`, the closest thing axum offers to a
//! client-side session.

use axum::Router;
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};

async fn count(jar: PrivateCookieJar) -> (PrivateCookieJar, String) {
    let n = jar.get("n").and_then(|cookie| cookie.value().parse::<u64>().ok()).unwrap_or(0) + 1;
    // The same attributes our layer sets on its cookie.
    let cookie = Cookie::build(("n", n.to_string()))
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax);
    (jar.add(cookie), n.to_string())
}

/// `GET /` and `GET /start`: read, bump and reseal the counter cookie.
pub(crate) fn router() -> Router {
    // A fixed key: the benchmark needs no secrecy, only the same work.
    let key = Key::from(&[7; 64]);
    Router::new().route("/", get(count)).route("/start", get(count)).with_state(key)
}
