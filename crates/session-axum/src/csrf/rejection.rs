//! Why a request was refused, and the refusal itself.

use std::fmt;
use std::sync::Arc;

use axum::response::IntoResponse;
use http::StatusCode;

#[cfg(doc)]
use super::CsrfLayer;
use crate::config::ErrorResponder;

/// Why a [`CsrfLayer`] refused a request: logged, and given to
/// [`ErrorResponder::csrf_rejected`], never told to the client.
///
/// ```
/// use session_axum::csrf::CsrfReason;
///
/// assert_eq!(CsrfReason::WrongToken.status(), 403);
/// assert_eq!(CsrfReason::FormTooLarge.status(), 413);
/// assert_eq!(CsrfReason::MissingToken.to_string(), "no token in the x-csrf-token header or the csrf_token form field");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfReason {
    /// `Sec-Fetch-Site`, or `Origin` against `Host` and the trusted origins,
    /// says the request comes from another origin.
    #[error("the browser says the request comes from another origin")]
    CrossOrigin,
    /// No token in the header or the form.
    #[error("no token in the x-csrf-token header or the csrf_token form field")]
    MissingToken,
    /// The session holds no token: there is no session (it expired, or was
    /// logged out), or the token was dropped at a login.
    #[error("the session holds no token (no session, expired, logged out, or a login since)")]
    NoStoredToken,
    /// The token is not the session's.
    #[error("the token is not the session's")]
    WrongToken,
    /// The URL-encoded form is larger than the layer reads
    /// ([`CsrfLayer::with_max_form_bytes`]): 413.
    #[error("the form is larger than the layer reads to find the token")]
    FormTooLarge,
    /// The body could not be read (the client went away, say): 400.
    #[error("the request body could not be read")]
    UnreadableBody,
}

impl CsrfReason {
    /// The status of the default response: 403, but 413 for
    /// [`FormTooLarge`](Self::FormTooLarge) and 400 for
    /// [`UnreadableBody`](Self::UnreadableBody).
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::CrossOrigin | Self::MissingToken | Self::NoStoredToken | Self::WrongToken => {
                StatusCode::FORBIDDEN
            }
            Self::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request refused by a [`CsrfLayer`].
///
/// It answers through the session layer's
/// [`ErrorResponder::csrf_rejected`] (by default
/// [`default_response`](Self::default_response): 403 with a short body that
/// does not say which check failed), and logs the [`reason`](Self::reason)
/// at warn level.
///
/// ```
/// use axum::response::IntoResponse;
/// use session_axum::csrf::{CsrfReason, CsrfRejection};
///
/// let rejection = CsrfRejection::new(CsrfReason::CrossOrigin);
/// assert_eq!(rejection.reason(), CsrfReason::CrossOrigin);
/// assert_eq!(
///     rejection.to_string(),
///     "CSRF check failed: the browser says the request comes from another origin"
/// );
/// assert_eq!(rejection.into_response().status(), 403);
/// ```
#[derive(thiserror::Error)]
#[error("CSRF check failed: {reason}")]
pub struct CsrfRejection {
    reason: CsrfReason,
    /// The session layer's responder; `None` answers the default response.
    responder: Option<Arc<dyn ErrorResponder>>,
}

impl CsrfRejection {
    /// A rejection for `reason` that answers the default response (the
    /// layer's rejections answer through the configured responder): for
    /// testing a responder, say.
    #[must_use]
    pub fn new(reason: CsrfReason) -> Self {
        Self { reason, responder: None }
    }

    pub(super) fn with_responder(reason: CsrfReason, responder: Arc<dyn ErrorResponder>) -> Self {
        Self { reason, responder: Some(responder) }
    }

    /// Why the request was refused.
    #[must_use]
    pub fn reason(&self) -> CsrfReason {
        self.reason
    }

    /// The status of the default response ([`CsrfReason::status`]).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The response of [`ErrorResponder::csrf_rejected`] unless a responder
    /// replaces it: [`status`](Self::status) with a plain-text body that
    /// does not say which check failed.
    ///
    /// ```
    /// use session_axum::csrf::{CsrfReason, CsrfRejection};
    ///
    /// let response = CsrfRejection::new(CsrfReason::MissingToken).default_response();
    /// assert_eq!(response.status(), 403);
    /// ```
    #[must_use]
    pub fn default_response(&self) -> axum::response::Response {
        let body = match self.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "Form too large.\n",
            StatusCode::BAD_REQUEST => "Bad request.\n",
            _ => "CSRF check failed: reload the page and try again.\n",
        };
        (self.status(), body).into_response()
    }
}

impl fmt::Debug for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfRejection").field("reason", &self.reason).finish_non_exhaustive()
    }
}

impl IntoResponse for CsrfRejection {
    fn into_response(self) -> axum::response::Response {
        tracing::warn!(reason = ?self.reason, "{self}; request refused");
        match &self.responder {
            Some(responder) => responder.csrf_rejected(&self),
            None => self.default_response(),
        }
    }
}
