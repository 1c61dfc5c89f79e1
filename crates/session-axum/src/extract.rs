//! The [`Session`] extractor.

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::kind::SessionKind;
use crate::rejection::MissingSessionLayer;
use crate::session::Session;

/// A route without the [`SessionLayer`](crate::SessionLayer) of kind `K`
/// answers 500 naming the layer ([`MissingSessionLayer`]), as every
/// extractor that needs it does. There is no `Option<Session>`: with the
/// layer, a session always exists (perhaps empty), and a missing layer is a
/// wiring mistake, not an absent session.
///
/// ```compile_fail
/// use session_axum::Session;
/// async fn handler(session: Option<Session>) {}
/// let _: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
impl<S, K> FromRequestParts<S> for Session<K>
where
    S: Send + Sync,
    K: SessionKind,
{
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingSessionLayer::new(K::NAME))
    }
}
