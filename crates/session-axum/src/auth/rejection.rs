//! Why an auth extractor or guard turned a request away.

use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use session_core::Error;

use crate::config::ErrorResponder;
use crate::rejection::{MissingSessionLayer, SessionError};

/// The request has no logged-in user: 401.
///
/// From [`CurrentUser`](crate::CurrentUser), and from
/// [`login_required`](crate::login_required) and
/// [`permission_required`](crate::permission_required) without a redirect.
///
/// ```
/// use axum::response::IntoResponse;
/// use session_axum::auth::Unauthenticated;
///
/// let response = Unauthenticated::default().into_response();
/// assert_eq!(response.status(), 401);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("Login required.\n")]
#[non_exhaustive]
pub struct Unauthenticated;

/// The logged-in user lacks the permission a
/// [`permission_required`](crate::permission_required) layer asks for: 403.
///
/// ```
/// use axum::response::IntoResponse;
/// use session_axum::auth::Forbidden;
///
/// assert_eq!(Forbidden::default().into_response().status(), 403);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("Forbidden.\n")]
#[non_exhaustive]
pub struct Forbidden;

/// The status, body and response of a rejection whose answer never varies.
macro_rules! fixed_rejection {
    ($name:ident, $status:ident) => {
        impl $name {
            /// The response status.
            #[must_use]
            pub fn status(&self) -> StatusCode {
                StatusCode::$status
            }

            /// The response body.
            #[must_use]
            pub fn body_text(&self) -> String {
                self.to_string()
            }
        }

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                tracing::trace!(
                    status = self.status().as_u16(),
                    rejection = stringify!($name),
                    "rejecting request"
                );
                (self.status(), self.body_text()).into_response()
            }
        }
    };
}

fixed_rejection!(Unauthenticated, UNAUTHORIZED);
fixed_rejection!(Forbidden, FORBIDDEN);

/// An auth extractor or guard was used on a route without the matching
/// [`AuthLayer`](crate::AuthLayer). A programming error: 500, with a message
/// naming the missing layer.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::CurrentUser;
/// # #[derive(Clone)] struct User;
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// // Without `.layer(AuthLayer::new(...))`, this route answers 500
/// // "Missing auth layer for user type `...User` ...".
/// let app: Router = Router::new().route("/", get(|_: CurrentUser<User>| async { "hi" }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "Missing auth layer for user type `{user_type}` on session kind `{kind}`: add an `AuthLayer` for it around this route"
)]
pub struct MissingAuthLayer {
    user_type: &'static str,
    kind: &'static str,
}

impl MissingAuthLayer {
    pub(crate) fn new(user_type: &'static str, kind: &'static str) -> Self {
        Self { user_type, kind }
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

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        tracing::error!(user_type = self.user_type, kind = self.kind, "{self}");
        (self.status(), self.body_text()).into_response()
    }
}

/// The [`UserLoader`](crate::UserLoader) failed.
///
/// A runtime failure like a session store that is down, so it answers the
/// same way: through the [`ErrorResponder`] configured on the
/// [`SessionLayer`](crate::SessionLayer) (see
/// [`SessionConfig::with_error_responder`](crate::SessionConfig::with_error_responder)).
/// The responder sees it as [`Error::Backend`] with `store`
/// [`UserLoadFailed::STORE`] and the loader's error as `source`; the default
/// responder answers 503 without details. The error is logged.
///
/// A responder that tells user-database outages apart from session-store
/// ones:
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use http::StatusCode;
/// use session_axum::{SessionConfig, auth::UserLoadFailed};
/// use session_axum::core::Error;
///
/// fn respond(error: &Error) -> Response {
///     match error {
///         Error::Backend { store, .. } if *store == UserLoadFailed::STORE => {
///             (StatusCode::SERVICE_UNAVAILABLE, "Accounts are unavailable.").into_response()
///         }
///         _ if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
///         _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
///     }
/// }
///
/// let config = SessionConfig::default().with_error_responder(respond);
/// let down = Error::backend(UserLoadFailed::STORE, std::io::Error::other("timeout"));
/// assert_eq!(respond(&down).status(), 503);
/// # let _ = config;
/// ```
#[derive(Clone, thiserror::Error)]
#[error("loading the user failed: {}", loader_error(error))]
pub struct UserLoadFailed {
    /// An [`Error::Backend`] for [`Self::STORE`]: shared, because every
    /// later lookup of the same request fails with it again.
    #[source]
    error: Arc<Error>,
    responder: Arc<dyn ErrorResponder>,
}

impl UserLoadFailed {
    /// The `store` name of the [`Error::Backend`] the responder sees.
    ///
    /// ```
    /// use session_axum::auth::UserLoadFailed;
    /// use session_axum::core::Error;
    ///
    /// let error = Error::backend(UserLoadFailed::STORE, std::io::Error::other("timeout"));
    /// assert_eq!(error.to_string(), "user store: timeout");
    /// ```
    pub const STORE: &'static str = "user";

    pub(crate) fn new(error: Arc<Error>, responder: Arc<dyn ErrorResponder>) -> Self {
        Self { error, responder }
    }

    /// The failure as the responder sees it: an [`Error::Backend`] for
    /// [`Self::STORE`], whose `source` is the loader's error.
    ///
    /// ```
    /// use session_axum::auth::{AuthRejection, UserLoadFailed};
    ///
    /// fn log_it(rejection: &AuthRejection) {
    ///     if let AuthRejection::UserLoadFailed(failed) = rejection {
    ///         eprintln!("user database: {}", failed.error());
    ///     }
    /// }
    /// # let _ = log_it;
    /// ```
    #[must_use]
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The status the configured responder answers with (503 by default).
    /// It calls the responder and drops the body.
    ///
    /// ```
    /// use session_axum::auth::AuthRejection;
    ///
    /// fn is_outage(rejection: &AuthRejection) -> bool {
    ///     matches!(rejection, AuthRejection::UserLoadFailed(failed) if failed.status() == 503)
    /// }
    /// # let _ = is_outage;
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.responder.respond(&self.error).status()
    }
}

impl fmt::Debug for UserLoadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserLoadFailed").field(&self.error).finish()
    }
}

/// The loader's own error inside `error`, for the message.
fn loader_error(error: &Error) -> &dyn std::fmt::Display {
    match error {
        Error::Backend { source, .. } => source,
        other => other,
    }
}

impl IntoResponse for UserLoadFailed {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self, "loading the user failed");
        self.responder.respond(&self.error)
    }
}

/// Everything an auth extractor, guard or [`Auth`](crate::Auth) method can
/// fail with; handlers can `?` it (a [`SessionError`] converts into it).
///
/// How each variant answers:
///
/// - [`Unauthenticated`]: 401 (or the login redirect of
///   [`login_required`](crate::login_required)), and [`Forbidden`]: 403.
///   These are access decisions, not failures, so they do not go through the
///   [`ErrorResponder`]: it only ever sees a session [`Error`].
/// - [`UserLoadFailed`] and [`Session`](Self::Session): runtime failures of
///   the user loader or the session store. They answer through the
///   [`ErrorResponder`] configured on the session layer, like
///   [`SessionError`] does (503 for an outage by default).
/// - [`MissingAuthLayer`] and [`MissingSessionLayer`]: the app is wired
///   wrongly. Always 500 with a message naming the missing layer, logged
///   at error level; not the responder's, since without the session layer
///   there is none to ask, and its answer would hide which layer to add.
///
/// ```
/// use session_axum::auth::{AuthRejection, Unauthenticated};
///
/// let rejection = AuthRejection::from(Unauthenticated::default());
/// assert_eq!(rejection.status(), 401);
/// assert_eq!(rejection.to_string(), "Login required.\n");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No logged-in user: 401.
    #[error("{0}")]
    Unauthenticated(#[from] Unauthenticated),
    /// The user lacks a permission: 403.
    #[error("{0}")]
    Forbidden(#[from] Forbidden),
    /// The user loader failed: the configured error response (503 by
    /// default).
    #[error("{0}")]
    UserLoadFailed(#[from] UserLoadFailed),
    /// The session store failed: the configured error response (503 by
    /// default for a store that is down).
    #[error("{0}")]
    Session(#[from] SessionError),
    /// No [`AuthLayer`](crate::AuthLayer) for this user type: 500.
    #[error("{0}")]
    MissingAuthLayer(#[from] MissingAuthLayer),
    /// No [`SessionLayer`](crate::SessionLayer): 500.
    #[error("{0}")]
    MissingSessionLayer(#[from] MissingSessionLayer),
}

impl AuthRejection {
    /// The response status. For [`UserLoadFailed`](Self::UserLoadFailed)
    /// and [`Session`](Self::Session) it is what the configured
    /// [`ErrorResponder`] answers (it is called, and the body dropped).
    ///
    /// ```
    /// use session_axum::auth::{AuthRejection, Forbidden};
    ///
    /// assert_eq!(AuthRejection::from(Forbidden::default()).status(), 403);
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(inner) => inner.status(),
            Self::Forbidden(inner) => inner.status(),
            Self::UserLoadFailed(inner) => inner.status(),
            Self::Session(inner) => inner.status(),
            Self::MissingAuthLayer(inner) => inner.status(),
            Self::MissingSessionLayer(inner) => inner.status(),
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(inner) => inner.into_response(),
            Self::Forbidden(inner) => inner.into_response(),
            Self::UserLoadFailed(inner) => inner.into_response(),
            Self::Session(inner) => inner.into_response(),
            Self::MissingAuthLayer(inner) => inner.into_response(),
            Self::MissingSessionLayer(inner) => inner.into_response(),
        }
    }
}
