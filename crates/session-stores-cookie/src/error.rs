//! Errors sealing a session, mapped into [`session_core::Error`].

/// Why a session could not be sealed. Never carries key material or data.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
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
            #[cfg(feature = "fernet")]
            FormatError::FernetKey => "cookie-fernet",
            #[cfg(feature = "jwt")]
            FormatError::Jwt(_) => "cookie-jwt",
        };
        Self::backend(store, error)
    }
}
