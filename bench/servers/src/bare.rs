//! `bare`: axum with no session, the baseline every ratio divides by.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;

static COUNTER: AtomicU64 = AtomicU64::new(0);

async fn count() -> String {
    (COUNTER.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

/// `GET /` and `GET /start` both bump a global counter.
pub(crate) fn router() -> Router {
    Router::new().route("/", get(count)).route("/start", get(count))
}
