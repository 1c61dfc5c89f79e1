//! [`AuthLayer`]: registers the [`UserLoader`] for a user type.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::context::AuthContext;
use crate::auth::user::{AuthUser, DynLoader, UserLoader};
use crate::kind::{DefaultSession, SessionKind};

/// Registers the [`UserLoader`] for user type `U` on the sessions of kind
/// `K`, so [`CurrentUser<U>`](crate::CurrentUser), [`Auth<U>`](crate::Auth),
/// [`login_required`](crate::login_required) and
/// [`permission_required`](crate::permission_required) work on the routes
/// it wraps.
///
/// It only adds a small per-request context (the loader and a cache, so the
/// user is loaded at most once per request); nothing is loaded until
/// something asks. Add it with `.layer(..)` next to the
/// [`SessionLayer`](crate::SessionLayer), on the outermost router: either
/// order works, and when it wraps [`Router::nest`](axum::Router::nest)ed
/// routers, the `?next=` of [`login_required`](crate::login_required)
/// redirects keeps the full original path.
///
/// ```
/// use std::convert::Infallible;
///
/// use axum::{Router, routing::get};
/// use session_axum::{AuthLayer, AuthUser, CurrentUser, SessionLayer, UserLoader, memory::MemoryStore};
///
/// #[derive(Clone)]
/// struct User {
///     id: u64,
///     name: String,
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
/// struct Users;
///
/// impl UserLoader<User> for Users {
///     type Error = Infallible;
///     async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
///         Ok(None) // look the user up in your database
///     }
/// }
///
/// async fn me(user: CurrentUser<User>) -> String {
///     format!("Hello, {}", user.name)
/// }
///
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .layer(AuthLayer::new(Users))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
pub struct AuthLayer<U, K = DefaultSession> {
    loader: Arc<dyn DynLoader<U>>,
    _kind: PhantomData<fn() -> K>,
}

impl<U: AuthUser> AuthLayer<U> {
    /// Registers `loader` for the default session.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    /// # #[derive(Clone)] struct Users;
    /// # impl session_axum::UserLoader<User> for Users {
    /// #     type Error = Infallible;
    /// #     async fn load(&self, _: &u64) -> Result<Option<User>, Infallible> { Ok(None) }
    /// # }
    /// use session_axum::AuthLayer;
    ///
    /// let layer = AuthLayer::new(Users); // an `AuthLayer<User>`, inferred from the loader
    /// # let _: AuthLayer<User> = layer;
    /// ```
    pub fn new<L: UserLoader<U>>(loader: L) -> Self {
        Self { loader: Arc::new(loader), _kind: PhantomData }
    }
}

impl<U: AuthUser, K: SessionKind> AuthLayer<U, K> {
    /// The same loader on the sessions of kind `Other`: log users in to
    /// `Session<Other>` and extract them with `CurrentUser<U, Other>`. Only
    /// the session kind changes: the loader is kept (shared, not copied).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// use session_axum::{AuthLayer, SessionKind};
    /// # #[derive(Clone)] struct Admin;
    /// # impl session_axum::AuthUser for Admin {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    /// # struct Admins;
    /// # impl session_axum::UserLoader<Admin> for Admins {
    /// #     type Error = Infallible;
    /// #     async fn load(&self, _: &u64) -> Result<Option<Admin>, Infallible> { Ok(None) }
    /// # }
    ///
    /// struct AdminArea;
    /// impl SessionKind for AdminArea {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// let layer: AuthLayer<Admin, AdminArea> = AuthLayer::new(Admins).for_kind::<AdminArea>();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn for_kind<Other: SessionKind>(self) -> AuthLayer<U, Other> {
        AuthLayer { loader: self.loader, _kind: PhantomData }
    }
}

impl<U, K> Clone for AuthLayer<U, K> {
    fn clone(&self) -> Self {
        Self { loader: Arc::clone(&self.loader), _kind: PhantomData }
    }
}

impl<U, K: SessionKind> fmt::Debug for AuthLayer<U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .finish_non_exhaustive()
    }
}

impl<Inner, U, K> Layer<Inner> for AuthLayer<U, K> {
    type Service = AuthService<Inner, U, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        AuthService { inner, loader: Arc::clone(&self.loader), _kind: PhantomData }
    }
}

/// The service built by [`AuthLayer`]. It adds the auth context to each
/// request and otherwise passes it through unchanged; its future is the
/// inner service's own.
///
/// ```
/// # use std::convert::Infallible;
/// # #[derive(Clone)] struct User;
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// # struct Users;
/// # impl session_axum::UserLoader<User> for Users {
/// #     type Error = Infallible;
/// #     async fn load(&self, _: &u64) -> Result<Option<User>, Infallible> { Ok(None) }
/// # }
/// use axum::{Router, routing::get};
/// use session_axum::{AuthLayer, auth::AuthService};
/// use tower_layer::Layer;
///
/// let router: Router = Router::new().route("/", get(|| async { "hi" }));
/// let service: AuthService<Router, User> = AuthLayer::new(Users).layer(router);
/// # let _ = service;
/// ```
pub struct AuthService<Inner, U, K = DefaultSession> {
    inner: Inner,
    loader: Arc<dyn DynLoader<U>>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner: Clone, U, K> Clone for AuthService<Inner, U, K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), loader: Arc::clone(&self.loader), _kind: PhantomData }
    }
}

impl<Inner: fmt::Debug, U, K: SessionKind> fmt::Debug for AuthService<Inner, U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<Inner, U, K, B> Service<Request<B>> for AuthService<Inner, U, K>
where
    Inner: Service<Request<B>>,
    U: AuthUser,
    K: SessionKind,
{
    type Response = Inner::Response;
    type Error = Inner::Error;
    type Future = Inner::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // With the layer on both an outer and a nested router, the outer
        // context stays: it saw the full path, and one cache serves both.
        if request.extensions().get::<AuthContext<U, K>>().is_none() {
            let target = request.uri().path_and_query().cloned();
            let context = AuthContext::<U, K>::new(Arc::clone(&self.loader), target);
            request.extensions_mut().insert(context);
        }
        self.inner.call(request)
    }
}
