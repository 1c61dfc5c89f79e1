//! Why an auth extractor or guard turned a request away.

use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use session_core::BoxError;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forbidden;

macro_rules! fixed_rejection {
    ($name:ident, $status:ident, $body:literal) => {
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($body)
            }
        }

        impl std::error::Error for $name {}

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                tracing::trace!(
                    status = self.status().as_u16(),
                    rejection = stringify!($name),
                    "rejecting request"
                );
                (self.status(), $body).into_response()
            }
        }
    };
}

fixed_rejection!(Unauthenticated, UNAUTHORIZED, "Login required.\n");
fixed_rejection!(Forbidden, FORBIDDEN, "Forbidden.\n");

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl fmt::Display for MissingAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Missing auth layer for user type `{}` on session kind `{}`: add an `AuthLayer` for it around this route",
            self.user_type, self.kind
        )
    }
}

impl std::error::Error for MissingAuthLayer {}

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        tracing::error!(user_type = self.user_type, kind = self.kind, "{self}");
        (self.status(), self.body_text()).into_response()
    }
}

/// The [`UserLoader`](crate::UserLoader) failed: 503. The error is logged,
/// not sent to the client.
///
/// ```
/// use session_axum::auth::AuthRejection;
///
/// fn describe(rejection: &AuthRejection) -> &'static str {
///     match rejection {
///         AuthRejection::UserLoadFailed(failed) => {
///             assert_eq!(failed.status(), 503);
///             "the user database is down"
///         }
///         _ => "something else",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone)]
pub struct UserLoadFailed {
    source: Arc<BoxError>,
}

impl UserLoadFailed {
    pub(crate) fn new(source: Arc<BoxError>) -> Self {
        Self { source }
    }

    /// Always 503.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    /// The response body (it does not include the error).
    #[must_use]
    pub fn body_text(&self) -> String {
        "User store unavailable; please retry.\n".to_owned()
    }
}

impl fmt::Display for UserLoadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loading the user failed: {}", self.source)
    }
}

impl std::error::Error for UserLoadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.source)
    }
}

impl IntoResponse for UserLoadFailed {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self.source, "loading the user failed");
        (self.status(), self.body_text()).into_response()
    }
}

/// Everything an auth extractor, guard or [`Auth`](crate::Auth) method can
/// fail with. Each variant answers with its own status: 401, 403, 503 for a
/// failed user load, the session layer's error response for a failed session
/// store, and 500 for a missing layer.
///
/// ```
/// use session_axum::auth::{AuthRejection, Unauthenticated};
///
/// let rejection = AuthRejection::from(Unauthenticated::default());
/// assert_eq!(rejection.status(), 401);
/// assert_eq!(rejection.body_text(), "Login required.\n");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No logged-in user: 401.
    Unauthenticated(Unauthenticated),
    /// The user lacks a permission: 403.
    Forbidden(Forbidden),
    /// The user loader failed: 503.
    UserLoadFailed(UserLoadFailed),
    /// The session store failed: the session layer's error response (503 by
    /// default).
    Session(SessionError),
    /// No [`AuthLayer`](crate::AuthLayer) for this user type: 500.
    MissingAuthLayer(MissingAuthLayer),
    /// No [`SessionLayer`](crate::SessionLayer): 500.
    MissingSessionLayer(MissingSessionLayer),
}

impl AuthRejection {
    /// The response status. For [`Session`](Self::Session) this is what the
    /// default error responder answers (503 for a store that is down, 500
    /// otherwise); a custom responder decides for itself.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(inner) => inner.status(),
            Self::Forbidden(inner) => inner.status(),
            Self::UserLoadFailed(inner) => inner.status(),
            Self::Session(inner) if inner.error().is_unavailable() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MissingAuthLayer(inner) => inner.status(),
            Self::MissingSessionLayer(inner) => inner.status(),
        }
    }

    /// The response body (for [`Session`](Self::Session), see
    /// [`status`](Self::status)).
    #[must_use]
    pub fn body_text(&self) -> String {
        match self {
            Self::Unauthenticated(inner) => inner.body_text(),
            Self::Forbidden(inner) => inner.body_text(),
            Self::UserLoadFailed(inner) => inner.body_text(),
            Self::Session(_) => "Session error.\n".to_owned(),
            Self::MissingAuthLayer(inner) => inner.body_text(),
            Self::MissingSessionLayer(inner) => inner.body_text(),
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated(inner) => inner.fmt(f),
            Self::Forbidden(inner) => inner.fmt(f),
            Self::UserLoadFailed(inner) => inner.fmt(f),
            Self::Session(inner) => inner.fmt(f),
            Self::MissingAuthLayer(inner) => inner.fmt(f),
            Self::MissingSessionLayer(inner) => inner.fmt(f),
        }
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unauthenticated(inner) => Some(inner),
            Self::Forbidden(inner) => Some(inner),
            Self::UserLoadFailed(inner) => Some(inner),
            Self::Session(inner) => Some(inner),
            Self::MissingAuthLayer(inner) => Some(inner),
            Self::MissingSessionLayer(inner) => Some(inner),
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

macro_rules! from_variant {
    ($($variant:ident),*) => {$(
        impl From<$variant> for AuthRejection {
            fn from(inner: $variant) -> Self {
                Self::$variant(inner)
            }
        }
    )*};
}

from_variant!(Unauthenticated, Forbidden, UserLoadFailed, MissingAuthLayer, MissingSessionLayer);

impl From<SessionError> for AuthRejection {
    fn from(inner: SessionError) -> Self {
        Self::Session(inner)
    }
}
