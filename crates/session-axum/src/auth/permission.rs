//! [`permission_required`]: a route layer that checks the logged-in user.

use std::fmt;
use std::future::{Future, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::IntoResponse;
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::context::AuthContext;
use crate::auth::login_required::{GuardFuture, pass, take_ready};
use crate::auth::rejection::{Forbidden, Unauthenticated};
use crate::auth::user::{AuthUser, BoxFuture};
use crate::kind::{DefaultSession, SessionKind};

/// A route layer that lets through only logged-in users for whom `predicate`
/// holds: others get 403 ([`Forbidden`]), anonymous requests 401
/// ([`Unauthenticated`]). `OPTIONS` requests pass.
///
/// The predicate is either synchronous, `Fn(&U) -> bool`, or asynchronous,
/// `Fn(Arc<U>) -> impl Future<Output = bool>` (for a role lookup in a
/// database, say). The user comes from the same once-per-request lookup as
/// [`CurrentUser`](crate::CurrentUser).
///
/// Add it with [`Router::route_layer`](axum::Router::route_layer). To send
/// anonymous visitors to the login page instead of a 401, add
/// [`login_required`](crate::login_required) with a redirect *after* it (the
/// last `route_layer` runs first).
///
/// ```
/// use std::sync::Arc;
///
/// use axum::{Router, routing::get};
/// use session_axum::{login_required, permission_required};
/// # #[derive(Clone)] struct User { is_admin: bool, id: u64 }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// # async fn has_role(_: u64, _: &str) -> bool { false }
///
/// let admin: Router = Router::new()
///     .route("/admin", get(|| async { "admin area" }))
///     .route_layer(permission_required(|user: &User| user.is_admin))
///     .route_layer(login_required::<User>().redirect_to("/login"));
///
/// let billing: Router = Router::new()
///     .route("/billing", get(|| async { "billing" }))
///     .route_layer(permission_required(|user: Arc<User>| async move {
///         has_role(user.id, "billing").await
///     }));
/// ```
pub fn permission_required<U, M>(predicate: impl Predicate<U, M>) -> PermissionLayer<U>
where
    U: AuthUser,
    M: 'static,
{
    PermissionLayer {
        predicate: Arc::new(Erased { predicate, _marker: PhantomData }),
        _kind: PhantomData,
    }
}

/// Marks a synchronous [`Predicate`]: `Fn(&U) -> bool`. Inferred; you
/// never name it.
///
/// ```
/// use session_axum::permission_required;
/// # #[derive(Clone)] struct User { is_admin: bool }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// let admins_only = permission_required(|user: &User| user.is_admin);
/// # let _ = admins_only;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct SyncPredicate;

/// Marks an asynchronous [`Predicate`]: `Fn(Arc<U>) -> impl Future<Output = bool>`.
/// Inferred; you never name it.
///
/// ```
/// use std::sync::Arc;
/// use session_axum::{AuthUser, permission_required};
/// # #[derive(Clone)] struct User { id: u64 }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// # async fn is_subscriber(id: u64) -> bool { id % 2 == 0 }
///
/// let subscribers_only = permission_required(|user: Arc<User>| async move {
///     is_subscriber(user.id()).await
/// });
/// # let _ = subscribers_only;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct AsyncPredicate;

/// A permission check for [`permission_required`]. `M` tells the
/// synchronous ([`SyncPredicate`]) and asynchronous ([`AsyncPredicate`])
/// closure forms apart; implement it with your own marker type for a
/// reusable permission.
///
/// ```
/// use std::future::{Future, ready};
/// use std::sync::Arc;
/// use session_axum::{auth::Predicate, permission_required};
/// # #[derive(Clone)] struct User { roles: Vec<String> }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// struct HasRole(&'static str);
///
/// impl Predicate<User, HasRole> for HasRole {
///     fn allows(&self, user: Arc<User>) -> impl Future<Output = bool> + Send {
///         ready(user.roles.iter().any(|role| role == self.0))
///     }
/// }
///
/// let layer = permission_required(HasRole("editor"));
/// # let _: session_axum::auth::PermissionLayer<User> = layer;
/// ```
pub trait Predicate<U, M>: Send + Sync + 'static {
    /// Whether `user` may proceed.
    fn allows(&self, user: Arc<U>) -> impl Future<Output = bool> + Send;
}

impl<U, F> Predicate<U, SyncPredicate> for F
where
    U: Send + Sync + 'static,
    F: Fn(&U) -> bool + Send + Sync + 'static,
{
    fn allows(&self, user: Arc<U>) -> impl Future<Output = bool> + Send {
        ready(self(&user))
    }
}

impl<U, F, Fut> Predicate<U, AsyncPredicate> for F
where
    U: Send + Sync + 'static,
    F: Fn(Arc<U>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    fn allows(&self, user: Arc<U>) -> impl Future<Output = bool> + Send {
        self(user)
    }
}

/// A [`Predicate`] with its marker erased.
trait DynPredicate<U>: Send + Sync + 'static {
    fn allows_boxed(&self, user: Arc<U>) -> BoxFuture<'_, bool>;
}

struct Erased<P, M> {
    predicate: P,
    _marker: PhantomData<fn() -> M>,
}

impl<U, M, P> DynPredicate<U> for Erased<P, M>
where
    U: Send + Sync + 'static,
    M: 'static,
    P: Predicate<U, M>,
{
    fn allows_boxed(&self, user: Arc<U>) -> BoxFuture<'_, bool> {
        Box::pin(self.predicate.allows(user))
    }
}

/// The layer built by [`permission_required`].
///
/// ```
/// use session_axum::{auth::PermissionLayer, permission_required};
/// # #[derive(Clone)] struct User { is_admin: bool }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// let layer: PermissionLayer<User> = permission_required(|user: &User| user.is_admin);
/// # let _ = layer;
/// ```
#[must_use]
pub struct PermissionLayer<U, K = DefaultSession> {
    predicate: Arc<dyn DynPredicate<U>>,
    _kind: PhantomData<fn() -> K>,
}

impl<U: AuthUser, K: SessionKind> PermissionLayer<U, K> {
    /// The same check for users logged in to the sessions of kind `Other`.
    ///
    /// ```
    /// use session_axum::{SessionKind, permission_required};
    /// # #[derive(Clone)] struct User { is_admin: bool }
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// struct AdminArea;
    /// impl SessionKind for AdminArea {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// let layer = permission_required(|user: &User| user.is_admin).for_kind::<AdminArea>();
    /// # let _ = layer;
    /// ```
    pub fn for_kind<Other: SessionKind>(self) -> PermissionLayer<U, Other> {
        PermissionLayer { predicate: self.predicate, _kind: PhantomData }
    }
}

impl<U, K> Clone for PermissionLayer<U, K> {
    fn clone(&self) -> Self {
        Self { predicate: Arc::clone(&self.predicate), _kind: PhantomData }
    }
}

impl<U, K: SessionKind> fmt::Debug for PermissionLayer<U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionLayer")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .finish_non_exhaustive()
    }
}

impl<Inner, U, K> Layer<Inner> for PermissionLayer<U, K> {
    type Service = PermissionRequired<Inner, U, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        PermissionRequired { inner, predicate: Arc::clone(&self.predicate), _kind: PhantomData }
    }
}

/// The service built by [`PermissionLayer`]; `route_layer` builds it for
/// you.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{auth::PermissionRequired, permission_required};
/// use tower_layer::Layer;
/// # #[derive(Clone)] struct User { is_admin: bool }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// let router: Router = Router::new().route("/", get(|| async { "hi" }));
/// let guarded: PermissionRequired<Router, User> =
///     permission_required(|user: &User| user.is_admin).layer(router);
/// # let _ = guarded;
/// ```
pub struct PermissionRequired<Inner, U, K = DefaultSession> {
    inner: Inner,
    predicate: Arc<dyn DynPredicate<U>>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner: Clone, U, K> Clone for PermissionRequired<Inner, U, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            predicate: Arc::clone(&self.predicate),
            _kind: PhantomData,
        }
    }
}

impl<Inner: fmt::Debug, U, K: SessionKind> fmt::Debug for PermissionRequired<Inner, U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionRequired")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<Inner, U, K, ReqBody, ResBody> Service<Request<ReqBody>> for PermissionRequired<Inner, U, K>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    Inner::Future: Send + 'static,
    U: AuthUser,
    K: SessionKind,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Inner::Error;
    type Future = GuardFuture<Inner::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = take_ready(&mut self.inner);
        let predicate = Arc::clone(&self.predicate);
        GuardFuture::new(async move {
            if request.method() == Method::OPTIONS {
                return pass(inner, request).await;
            }
            let (context, session) =
                match AuthContext::<U, K>::from_extensions(request.extensions()) {
                    Ok(found) => found,
                    Err(rejection) => return Ok(rejection.into_response()),
                };
            match context.user(&session).await {
                Ok(Some(user)) => {
                    if predicate.allows_boxed(user).await {
                        pass(inner, request).await
                    } else {
                        Ok(Forbidden.into_response())
                    }
                }
                Ok(None) => Ok(Unauthenticated.into_response()),
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}
