//! Errors sealing a session, mapped into [`session_core::Error`].

/// Why a session could not be sealed. Never carries key material or data.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    /// The OS random number generator gave no nonce.
    #[cfg(feature = "aead")]
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),
    /// AES-GCM refused to encrypt (only for plaintexts over 64 GiB).
    #[cfg(feature = "aead")]
    #[error("AES-256-GCM refused to encrypt the session")]
    Encrypt,
    /// The `fernet` crate refused a 32-byte key (it accepts all of them).
    #[cfg(feature = "fernet")]
    #[error("the fernet crate refused the primary key")]
    FernetKey,
    /// `jsonwebtoken` failed to encode or sign.
    #[cfg(feature = "jwt")]
    #[error("signing the JWT failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl From<FormatError> for session_core::Error {
    fn from(error: FormatError) -> Self {
        let store = match &error {
            #[cfg(feature = "aead")]
            FormatError::Random(_) | FormatError::Encrypt => "cookie-aead",
            #[cfg(feature = "fernet")]
            FormatError::FernetKey => "cookie-fernet",
            #[cfg(feature = "jwt")]
            FormatError::Jwt(_) => "cookie-jwt",
        };
        Self::backend(store, error)
    }
}
