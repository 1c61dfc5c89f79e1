//! [`AuthUser`] and [`UserLoader`]: what the application tells the auth
//! layer about its users.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::BoxError;

/// A user that can log in.
///
/// The session keeps only the user's [`Id`](Self::Id) and a digest of
/// [`session_auth_hash`](Self::session_auth_hash); the user itself is loaded
/// by a [`UserLoader`] once per request.
///
/// ```
/// use session_axum::AuthUser;
///
/// #[derive(Debug, Clone)]
/// struct User {
///     id: u64,
///     name: String,
///     /// The PHC string of the password hash, e.g. `$argon2id$v=19$...`.
///     password_hash: String,
/// }
///
/// impl AuthUser for User {
///     type Id = u64;
///
///     fn id(&self) -> u64 {
///         self.id
///     }
///
///     fn session_auth_hash(&self) -> &[u8] {
///         self.password_hash.as_bytes()
///     }
/// }
/// ```
pub trait AuthUser: Send + Sync + 'static {
    /// The user's id, as stored in the session.
    ///
    /// It is serialized into the session data, and its `Display` form is the
    /// key of the store's per-user index (the sessions listed by
    /// [`Auth::sessions`](crate::Auth::sessions) and ended by
    /// [`Auth::logout_everywhere`](crate::Auth::logout_everywhere)), so two
    /// users must never display the same.
    type Id: Serialize + DeserializeOwned + Clone + fmt::Display + Send + Sync + 'static;

    /// The user's id.
    fn id(&self) -> Self::Id;

    /// Bytes that change whenever the user's credentials change: typically
    /// the password hash.
    ///
    /// A session remembers a SHA-256 digest of this value at login, and
    /// [`CurrentUser`](crate::CurrentUser) compares it (in constant time) on
    /// every request: once the password changes, every session logged in
    /// with the old one ends. The value itself is never stored.
    fn session_auth_hash(&self) -> &[u8];
}

/// Loads users by id, for the auth layer.
///
/// Register it with [`AuthLayer::new`](crate::AuthLayer::new). It is called
/// at most once per request, however many extractors and layers ask for the
/// current user. Return `Ok(None)` for a user that does not exist (any
/// more): the request is then anonymous. An error fails the request with
/// [`UserLoadFailed`](crate::auth::UserLoadFailed), answered by the session
/// layer's configured error responder (503 by default).
///
/// Implement it with `async fn`:
///
/// ```
/// use std::collections::HashMap;
/// use std::convert::Infallible;
/// use std::sync::Arc;
///
/// use session_axum::{AuthUser, UserLoader};
///
/// #[derive(Clone)]
/// struct User {
///     id: u64,
///     password_hash: String,
/// }
///
/// impl AuthUser for User {
///     type Id = u64;
///     fn id(&self) -> u64 {
///         self.id
///     }
///     fn session_auth_hash(&self) -> &[u8] {
///         self.password_hash.as_bytes()
///     }
/// }
///
/// #[derive(Clone)]
/// struct Users(Arc<HashMap<u64, User>>);
///
/// impl UserLoader<User> for Users {
///     type Error = Infallible;
///
///     async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
///         Ok(self.0.get(id).cloned())
///     }
/// }
/// ```
pub trait UserLoader<U: AuthUser>: Send + Sync + 'static {
    /// Why loading failed (the user database is down, ...).
    type Error: Into<BoxError> + Send + 'static;

    /// The user with this id, or `None` if there is none.
    fn load(&self, id: &U::Id) -> impl Future<Output = Result<Option<U>, Self::Error>> + Send;
}

impl<U: AuthUser, L: UserLoader<U>> UserLoader<U> for Arc<L> {
    type Error = L::Error;

    fn load(&self, id: &U::Id) -> impl Future<Output = Result<Option<U>, Self::Error>> + Send {
        (**self).load(id)
    }
}

/// A boxed future borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`UserLoader`] made object safe, so extractors need not name the loader.
pub(crate) trait DynLoader<U: AuthUser>: Send + Sync + 'static {
    fn load_boxed<'a>(&'a self, id: &'a U::Id) -> BoxFuture<'a, Result<Option<U>, BoxError>>;
}

impl<U: AuthUser, L: UserLoader<U>> DynLoader<U> for L {
    fn load_boxed<'a>(&'a self, id: &'a U::Id) -> BoxFuture<'a, Result<Option<U>, BoxError>> {
        Box::pin(async move { self.load(id).await.map_err(Into::into) })
    }
}
