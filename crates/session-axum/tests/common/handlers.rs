//! Route handlers that both test apps (the session app here and the auth
//! app of `auth_common`) serve.

use session_axum::{Session, SessionError};

/// `GET /incr`: the counter `n` under the session's lock, plus one.
pub async fn locked_increment(session: Session) -> Result<String, SessionError> {
    let locked = session.lock().await?;
    let n = locked.get::<u64>("n").await?.unwrap_or(0) + 1;
    // A racing request may interleave here; the lock must keep it out.
    tokio::task::yield_now().await;
    locked.insert("n", n).await?;
    Ok(n.to_string())
}
