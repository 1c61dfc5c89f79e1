//! Rejections and errors that handlers see.

use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::config::ErrorResponder;

/// The [`Session`](crate::Session) extractor was used on a route without the
/// matching [`SessionLayer`](crate::SessionLayer). A programming error: 500,
/// with a message naming the missing layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Missing session layer for session kind `{kind}`: add a `SessionLayer` for it around this route"
)]
pub struct MissingSessionLayer {
    kind: &'static str,
}

impl MissingSessionLayer {
    pub(crate) fn new(kind: &'static str) -> Self {
        Self { kind }
    }

    /// Always 500.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// The response body.
    #[must_use]
    pub fn body_text(&self) -> String {
        self.to_string()
    }
}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!(kind = self.kind, "{self}");
        (self.status(), self.body_text()).into_response()
    }
}

/// A session operation failed: the store is down, the lock timed out, or a
/// value could not be (de)serialized.
///
/// Returned by [`Session`](crate::Session) methods; it turns into the layer's
/// configured error response (503 for an unavailable store by default), so
/// handlers can use `?`.
///
/// ```
/// use session_axum::{Session, SessionError};
///
/// async fn handler(session: Session) -> Result<String, SessionError> {
///     let name: Option<String> = session.get("name").await?;
///     Ok(name.unwrap_or_default())
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct SessionError {
    #[source]
    error: session_core::Error,
    responder: Arc<dyn ErrorResponder>,
}

impl SessionError {
    pub(crate) fn new(error: session_core::Error, responder: Arc<dyn ErrorResponder>) -> Self {
        Self { error, responder }
    }

    /// The underlying error.
    #[must_use]
    pub fn error(&self) -> &session_core::Error {
        &self.error
    }

    /// Consumes this, returning the underlying error.
    #[must_use]
    pub fn into_error(self) -> session_core::Error {
        self.error
    }

    /// The status the configured responder answers with, for
    /// [`AuthRejection::status`](crate::auth::AuthRejection::status). It
    /// calls the responder and drops the body.
    pub(crate) fn status(&self) -> StatusCode {
        self.responder.respond(&self.error).status()
    }
}

impl fmt::Debug for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionError").field(&self.error).finish()
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self.error, "session operation failed");
        self.responder.respond(&self.error)
    }
}
