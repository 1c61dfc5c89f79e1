//! Why a stored record could not be read back.

/// A stored record that does not decode. The store only keeps bytes it wrote
/// itself, so this would be a bug; the session is logged and treated as
/// absent, like corrupt data in the persistent stores.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Corrupt {
    /// The fixed fields, the user or the expiry are cut short or invalid.
    #[error("malformed stored record")]
    Malformed,
    /// The session data is not a JSON object.
    #[error("stored session data: {0}")]
    Data(#[source] session_core::Error),
}
