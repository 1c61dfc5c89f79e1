//! [`CurrentUser`]: the logged-in user as an extractor.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::auth::context::AuthContext;
use crate::auth::rejection::{AuthRejection, Unauthenticated};
use crate::auth::user::AuthUser;
use crate::kind::{DefaultSession, SessionKind};

/// The logged-in user of this request.
///
/// Extracting it loads the user through the [`UserLoader`](crate::UserLoader)
/// registered by the [`AuthLayer`](crate::AuthLayer), at most once per
/// request (later extractors, guards and [`Auth::user`](crate::Auth::user)
/// reuse the result), and checks in constant time that the user's
/// [`session_auth_hash`](AuthUser::session_auth_hash) still matches the
/// one the session logged in with. If it does not (the password changed),
/// the session is ended.
///
/// Rejections ([`AuthRejection`]):
/// - nobody logged in, the user no longer exists, the credentials changed,
///   or the session holds auth data of the wrong shape: 401
///   ([`Unauthenticated`]);
/// - the loader failed ([`UserLoadFailed`](crate::auth::UserLoadFailed)) or
///   the session store failed: the session layer's configured error
///   response (503 by default);
/// - the [`AuthLayer`](crate::AuthLayer) or
///   [`SessionLayer`](crate::SessionLayer) is missing: 500 naming it.
///
/// `Option<CurrentUser<U>>` is `None` exactly when the first case would be
/// a 401: nobody (valid) is logged in. Every other rejection stays one, so
/// a failing user database or a forgotten layer is never mistaken for an
/// anonymous visitor. To render a page anyway when the user cannot be
/// loaded, extract `Result<CurrentUser<U>, AuthRejection>` and decide.
///
/// It dereferences to `U`.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{CurrentUser, auth::AuthRejection};
/// # #[derive(Clone)] struct User { name: String }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// async fn profile(user: CurrentUser<User>) -> String {
///     format!("Signed in as {}", user.name)
/// }
///
/// async fn home(user: Option<CurrentUser<User>>) -> String {
///     match user {
///         Some(user) => format!("Welcome back, {}", user.name),
///         None => "Welcome, stranger".to_owned(),
///     }
/// }
///
/// // A banner that must render even while the user database is down.
/// async fn banner(user: Result<CurrentUser<User>, AuthRejection>) -> String {
///     match user {
///         Ok(user) => format!("Signed in as {}", user.name),
///         Err(AuthRejection::Unauthenticated(_)) => "Log in".to_owned(),
///         Err(_) => String::new(),
///     }
/// }
///
/// let routes: Router = Router::new()
///     .route("/profile", get(profile))
///     .route("/", get(home))
///     .route("/banner", get(banner));
/// // ... plus `.layer(AuthLayer::new(loader)).layer(SessionLayer::new(store))`.
/// ```
pub struct CurrentUser<U, K: SessionKind = DefaultSession> {
    user: Arc<U>,
    _kind: PhantomData<fn() -> K>,
}

impl<U, K: SessionKind> CurrentUser<U, K> {
    pub(crate) fn new(user: Arc<U>) -> Self {
        Self { user, _kind: PhantomData }
    }

    /// The user, shared with the request's cache.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_axum::CurrentUser;
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// fn keep(user: CurrentUser<User>) -> Arc<User> {
    ///     user.into_arc()
    /// }
    /// # let _ = keep;
    /// ```
    #[must_use]
    pub fn into_arc(self) -> Arc<U> {
        self.user
    }
}

impl<U, K: SessionKind> Deref for CurrentUser<U, K> {
    type Target = U;

    fn deref(&self) -> &U {
        &self.user
    }
}

impl<U, K: SessionKind> Clone for CurrentUser<U, K> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.user))
    }
}

impl<U: fmt::Debug, K: SessionKind> fmt::Debug for CurrentUser<U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrentUser").field(&self.user).finish()
    }
}

impl<S, U, K> FromRequestParts<S> for CurrentUser<U, K>
where
    S: Send + Sync,
    U: AuthUser,
    K: SessionKind,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (context, session) = AuthContext::<U, K>::from_extensions(&parts.extensions)?;
        match context.user(&session).await? {
            Some(user) => Ok(Self::new(user)),
            None => Err(Unauthenticated.into()),
        }
    }
}

/// `Option<CurrentUser<U>>`: `None` when nobody (valid) is logged in; every
/// failure, a missing layer included, is still a rejection.
impl<S, U, K> OptionalFromRequestParts<S> for CurrentUser<U, K>
where
    S: Send + Sync,
    U: AuthUser,
    K: SessionKind,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let (context, session) = AuthContext::<U, K>::from_extensions(&parts.extensions)?;
        Ok(context.user(&session).await?.map(Self::new))
    }
}
