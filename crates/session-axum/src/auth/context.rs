//! The per-request auth state: who is logged in, resolved at most once.

use std::marker::PhantomData;
use std::sync::Arc;

use http::Extensions;
use http::uri::PathAndQuery;
use serde::Deserialize as _;
use serde_json::Value;
use session_core::Error;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::auth::rejection::{AuthRejection, MissingAuthLayer, UserLoadFailed};
use crate::auth::user::{AuthUser, DynLoader};
use crate::kind::SessionKind;
use crate::rejection::MissingSessionLayer;
use crate::session::Session;

/// Session key holding the logged-in user's id. Reserved.
pub(crate) const USER_ID_KEY: &str = "_auth_user_id";
/// Session key holding the SHA-256 digest (hex) of the user's
/// `session_auth_hash` at login. Reserved.
pub(crate) const AUTH_HASH_KEY: &str = "_auth_hash";

/// What is known about the request's user.
enum Lookup<U> {
    /// Not looked at yet (or the login changed and it must be looked at again).
    Unresolved,
    /// Logged in, with a valid auth hash.
    User(Arc<U>),
    /// Nobody (or nobody valid) is logged in.
    Anonymous,
    /// The loader failed (kept as the [`Error::Backend`] the error responder
    /// sees); every later ask in this request fails the same way.
    Failed(Arc<Error>),
}

/// Inserted into each request by [`AuthLayer`](crate::AuthLayer); shared by
/// every extractor and guard of that request, so the user is loaded once.
pub(crate) struct AuthContext<U, K> {
    loader: Arc<dyn DynLoader<U>>,
    lookup: Arc<Mutex<Lookup<U>>>,
    /// The request target as the auth layer saw it, before `Router::nest`
    /// stripped a prefix: what `?next=` points back to.
    pub(crate) original_target: Option<PathAndQuery>,
    _kind: PhantomData<fn() -> K>,
}

impl<U, K> Clone for AuthContext<U, K> {
    fn clone(&self) -> Self {
        Self {
            loader: Arc::clone(&self.loader),
            lookup: Arc::clone(&self.lookup),
            original_target: self.original_target.clone(),
            _kind: PhantomData,
        }
    }
}

impl<U: AuthUser, K: SessionKind> AuthContext<U, K> {
    pub(crate) fn new(
        loader: Arc<dyn DynLoader<U>>,
        original_target: Option<PathAndQuery>,
    ) -> Self {
        Self {
            loader,
            lookup: Arc::new(Mutex::new(Lookup::Unresolved)),
            original_target,
            _kind: PhantomData,
        }
    }

    /// The context and session of a request, or the rejection naming the
    /// missing layer.
    pub(crate) fn from_extensions(
        extensions: &Extensions,
    ) -> Result<(Self, Session<K>), AuthRejection> {
        let context = extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| MissingAuthLayer::new(std::any::type_name::<U>(), K::NAME))?;
        let session =
            extensions.get::<Session<K>>().cloned().ok_or(MissingSessionLayer::new(K::NAME))?;
        Ok((context, session))
    }

    /// The logged-in user, loaded at most once per request.
    ///
    /// A session whose stored auth hash no longer matches the user's (the
    /// password changed) is ended. Stored data of the wrong shape is logged
    /// and treated as anonymous.
    pub(crate) async fn user(&self, session: &Session<K>) -> Result<Option<Arc<U>>, AuthRejection> {
        // A loader failure answers through the session layer's configured
        // responder, like a session store failure does.
        let failed = |error: &Arc<Error>| {
            let responder = Arc::clone(&session.config().error_responder);
            AuthRejection::from(UserLoadFailed::new(Arc::clone(error), responder))
        };
        let mut lookup = self.lookup.lock().await;
        match &*lookup {
            Lookup::User(user) => return Ok(Some(Arc::clone(user))),
            Lookup::Anonymous => return Ok(None),
            Lookup::Failed(error) => return Err(failed(error)),
            Lookup::Unresolved => {}
        }
        // Session store failures are not remembered: they are the session
        // layer's to report, and its own state decides whether to retry.
        *lookup = self.resolve(session).await?;
        match &*lookup {
            Lookup::User(user) => Ok(Some(Arc::clone(user))),
            Lookup::Failed(error) => Err(failed(error)),
            Lookup::Anonymous | Lookup::Unresolved => Ok(None),
        }
    }

    /// Forgets the looked-up user (after a login).
    pub(crate) async fn reset(&self) {
        *self.lookup.lock().await = Lookup::Unresolved;
    }

    /// Records that nobody is logged in any more (after a logout).
    pub(crate) async fn set_anonymous(&self) {
        *self.lookup.lock().await = Lookup::Anonymous;
    }

    async fn resolve(&self, session: &Session<K>) -> Result<Lookup<U>, AuthRejection> {
        // Read in place: the id is deserialized from the stored value and the
        // digest parsed from it, without copying either out of the session.
        let stored = session
            .read(|data| {
                let id = data?.get_value(USER_ID_KEY)?;
                let digest =
                    data?.get_value(AUTH_HASH_KEY).and_then(Value::as_str).and_then(parse_digest);
                Some((U::Id::deserialize(id), digest))
            })
            .await?;
        let Some((id, digest)) = stored else {
            return Ok(Lookup::Anonymous);
        };
        let id = match id {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, "stored user id has the wrong shape; treating the request as anonymous");
                return Ok(Lookup::Anonymous);
            }
        };
        let Some(stored) = digest else {
            tracing::warn!(
                "stored auth hash is missing or malformed; treating the request as anonymous"
            );
            return Ok(Lookup::Anonymous);
        };
        let user = match self.loader.load_boxed(&id).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                tracing::debug!(
                    "the session's user no longer exists; treating the request as anonymous"
                );
                return Ok(Lookup::Anonymous);
            }
            Err(error) => {
                tracing::warn!(%error, "loading the user failed");
                return Ok(Lookup::Failed(Arc::new(Error::backend(UserLoadFailed::STORE, error))));
            }
        };
        if bool::from(auth_digest(user.session_auth_hash()).ct_eq(&stored)) {
            return Ok(Lookup::User(Arc::new(user)));
        }
        tracing::info!("the user's credentials changed since this session logged in; ending it");
        session.destroy().await?;
        Ok(Lookup::Anonymous)
    }
}

/// SHA-256 of a user's `session_auth_hash`: what the session keeps, so a
/// leaked session store does not hand out password hashes.
pub(crate) fn auth_digest(session_auth_hash: &[u8]) -> [u8; 32] {
    Sha256::digest(session_auth_hash).into()
}

/// The digest as stored: 64 lowercase hex characters.
pub(crate) fn digest_hex(digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// Parses [`digest_hex`]'s output; `None` for anything else.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_hex() {
        let digest = auth_digest(b"$argon2id$v=19$...");
        let hex = digest_hex(&digest);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_digest(&hex), Some(digest));
        assert_eq!(parse_digest(&hex.to_uppercase()), None);
        assert_eq!(parse_digest(&hex[..62]), None);
        assert_eq!(parse_digest(""), None);
        assert_eq!(parse_digest(&"g".repeat(64)), None);
    }
}
