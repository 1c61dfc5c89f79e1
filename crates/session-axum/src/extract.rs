//! The [`Session`] extractor.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::kind::SessionKind;
use crate::rejection::MissingSessionLayer;
use crate::session::Session;

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

/// `Option<Session<K>>` is `None` on routes without the layer.
impl<S, K> OptionalFromRequestParts<S> for Session<K>
where
    S: Send + Sync,
    K: SessionKind,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
