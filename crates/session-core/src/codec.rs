//! Encoding session data to bytes and back.

use std::fmt::Debug;

use crate::{Error, SessionData};

/// Turns [`SessionData`] into bytes and back.
///
/// JSON ([`JsonCodec`]) is the default and the only format these crates ship:
/// a codec must never be able to construct arbitrary types from stored bytes
/// (no pickle-like formats), because stored sessions are only as trusted as
/// the store.
pub trait Codec: Debug + Send + Sync + 'static {
    /// Encodes the data.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the data cannot be encoded.
    fn encode(&self, data: &SessionData) -> Result<Vec<u8>, Error>;

    /// Decodes bytes produced by [`Codec::encode`]. The result is marked
    /// unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for bytes that are not a valid encoding; the caller
    /// treats that session as absent.
    fn decode(&self, bytes: &[u8]) -> Result<SessionData, Error>;
}

/// The JSON codec: a session is one JSON object.
///
/// ```
/// use session_core::{Codec, JsonCodec, SessionData};
///
/// let mut data = SessionData::default();
/// data.insert("user", "ada")?;
/// let bytes = JsonCodec.encode(&data)?;
/// assert_eq!(bytes, br#"{"user":"ada"}"#);
/// assert_eq!(JsonCodec.decode(&bytes)?.get::<String>("user")?.as_deref(), Some("ada"));
/// assert!(JsonCodec.decode(b"[1,2]").is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode(&self, data: &SessionData) -> Result<Vec<u8>, Error> {
        Ok(serde_json::to_vec(data)?)
    }

    fn decode(&self, bytes: &[u8]) -> Result<SessionData, Error> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_corrupt_and_wrongly_shaped_input() {
        for bad in [&b""[..], b"{", b"null", b"42", b"\"s\"", b"{\"a\":1", b"\xff\xfe"] {
            assert!(JsonCodec.decode(bad).is_err(), "{bad:?}");
        }
    }
}
