//! Client-side sessions: the whole session travels in the cookie.

use std::fmt::Debug;

use crate::{Error, Record, Timestamp};

/// A cookie format that carries a whole session (data and deadlines) in the
/// cookie value, sealed so the client cannot forge or edit it.
///
/// The layer calls [`seal`](Self::seal) when the session changed and
/// [`open`](Self::open) on every request that uses it. There is no server-side
/// state, so there is no lock: concurrent requests of one session are
/// last-writer-wins, and a session cannot be ended server-side before its
/// deadline (a copied cookie stays valid until then).
///
/// # Contract
///
/// - What is authenticated covers the cookie name (its purpose), the data and
///   every deadline, so a value moved to another cookie, or with an edited
///   expiry, does not open.
/// - `open` returns `None` for anything that is not a valid, unexpired value
///   sealed for `cookie_name` by a key it knows, at `now`. It never panics,
///   whatever the input, and does its expiry arithmetic saturating.
/// - The opened record's `key` is not meaningful (client-side sessions have no
///   id) and its `version` is 0. [`Opened::needs_reseal`] is true when a
///   fallback key opened it, so the layer reissues it under the primary key.
pub trait CookieFormat: Debug + Send + Sync + 'static {
    /// Seals `record`'s data and deadlines into a cookie value for
    /// `cookie_name`. The value must be a valid cookie value (for example
    /// base64url).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the data cannot be encoded, or a crypto failure as
    /// [`Error::Backend`].
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error>;

    /// Opens a cookie value sealed by [`seal`](Self::seal).
    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened>;
}

/// A successfully opened client-side session.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The session, marked unchanged.
    pub record: Record,
    /// It was sealed with a fallback key: reseal it with the primary.
    pub needs_reseal: bool,
}
