//! [`permission_required`]: a route layer that checks the logged-in user.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use tower_layer::Layer;

use crate::auth::guard::{Guard, Rule};
use crate::auth::user::{AuthUser, BoxFuture};
use crate::kind::{DefaultSession, SessionKind};

/// A route layer that lets through only logged-in users for whom `predicate`
/// holds: others get 403 ([`Forbidden`](crate::auth::Forbidden)), anonymous requests 401
/// ([`Unauthenticated`](crate::auth::Unauthenticated)), for every method,
/// `OPTIONS` included (see [`login_required`](crate::login_required) for
/// CORS preflights).
///
/// Like [`login_required::<U>()`](crate::login_required), it takes the user
/// type as a turbofish, `permission_required::<User>(..)`, and the
/// closure's parameter (`&User`) is then inferred. The check is
/// synchronous; for one that awaits (a role lookup in a database, say) use
/// [`permission_required_async`], which names the user type the same way.
/// The user comes from the same once-per-request lookup as
/// [`CurrentUser`](crate::CurrentUser).
///
/// Add it with [`Router::route_layer`](axum::Router::route_layer). To send
/// anonymous visitors to the login page instead of a 401, add
/// [`login_required`](crate::login_required) with a redirect *after* it (the
/// last `route_layer` runs first).
///
/// Failures answer like [`CurrentUser`](crate::CurrentUser)'s rejections:
/// a failing user loader or session store through the session layer's
/// configured error response, a missing [`AuthLayer`](crate::AuthLayer) or
/// [`SessionLayer`](crate::SessionLayer) with a 500 naming it.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{login_required, permission_required};
/// # #[derive(Clone)] struct User { is_admin: bool, roles: Vec<String> }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// let admin: Router = Router::new()
///     .route("/admin", get(|| async { "admin area" }))
///     .route_layer(permission_required::<User>(|user| user.is_admin))
///     .route_layer(login_required::<User>().redirect_to("/login"));
///
/// // A reusable permission is a function, or a closure over its data.
/// fn is_editor(user: &User) -> bool {
///     user.roles.iter().any(|role| role == "editor")
/// }
/// let editors: Router = Router::new()
///     .route("/edit", get(|| async { "editor" }))
///     .route_layer(permission_required::<User>(is_editor));
/// ```
pub fn permission_required<U: AuthUser>(
    predicate: impl Fn(&U) -> bool + Send + Sync + 'static,
) -> PermissionLayer<U> {
    PermissionLayer::new(Arc::new(SyncCheck(predicate)))
}

/// [`permission_required`] with an asynchronous check:
/// `Fn(Arc<U>) -> impl Future<Output = bool>`.
///
/// Named the same way, `permission_required_async::<User>(..)`, with the
/// closure's parameter (`Arc<User>`) inferred. The future must be `Send`
/// and own what it uses: clone what it needs from the closure's captures
/// into it.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{AuthUser, auth::permission_required_async};
/// # #[derive(Clone)] struct User { id: u64 }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// # #[derive(Clone)] struct Roles;
/// # impl Roles { async fn has(&self, _: u64, _: &str) -> bool { false } }
///
/// let roles = Roles; // a handle to the role database
/// let billing: Router = Router::new()
///     .route("/billing", get(|| async { "billing" }))
///     .route_layer(permission_required_async::<User>(move |user| {
///         let roles = roles.clone();
///         async move { roles.has(user.id(), "billing").await }
///     }));
/// ```
pub fn permission_required_async<U: AuthUser>(
    predicate: impl AsyncPredicate<U>,
) -> PermissionLayer<U> {
    PermissionLayer::new(Arc::new(AsyncCheck(predicate)))
}

/// The closures [`permission_required_async`] takes:
/// `Fn(Arc<U>) -> impl Future<Output = bool> + Send + 'static`. Implemented for every
/// such closure or function; you never implement it.
///
/// It exists so that the future's type need not be a second type parameter
/// of [`permission_required_async`]: the user type stays the only one to
/// name, and (through the `Fn` supertrait) the closure's parameter is
/// inferred from it.
///
/// ```
/// use std::sync::Arc;
/// use session_axum::auth::AsyncPredicate;
/// # #[derive(Clone)] struct User { id: u64 }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
///
/// async fn is_subscriber(user: Arc<User>) -> bool {
///     user.id % 2 == 0
/// }
///
/// fn check(_: impl AsyncPredicate<User>) {}
/// check(is_subscriber);
/// ```
pub trait AsyncPredicate<U>:
    Fn(Arc<U>) -> <Self as AsyncPredicate<U>>::Future + Send + Sync + 'static
{
    /// What the check returns. `'static`, since the guard keeps it past
    /// the borrow of the closure (it may only own, not borrow, what it
    /// needs).
    type Future: Future<Output = bool> + Send + 'static;
}

impl<U, F, Fut> AsyncPredicate<U> for F
where
    F: Fn(Arc<U>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    type Future = Fut;
}

/// A check's outcome: synchronous checks answer at once, so the common case
/// allocates nothing; asynchronous ones hand back a boxed future.
pub(crate) enum Check<'a> {
    Done(bool),
    Pending(BoxFuture<'a, bool>),
}

/// A permission check with its closure type erased.
pub(crate) trait DynPredicate<U>: Send + Sync + 'static {
    fn check(&self, user: Arc<U>) -> Check<'_>;
}

/// The closure of [`permission_required`].
struct SyncCheck<F>(F);

impl<U, F> DynPredicate<U> for SyncCheck<F>
where
    F: Fn(&U) -> bool + Send + Sync + 'static,
{
    fn check(&self, user: Arc<U>) -> Check<'_> {
        Check::Done((self.0)(&user))
    }
}

/// The closure of [`permission_required_async`].
struct AsyncCheck<F>(F);

impl<U, F> DynPredicate<U> for AsyncCheck<F>
where
    F: AsyncPredicate<U>,
{
    fn check(&self, user: Arc<U>) -> Check<'_> {
        Check::Pending(Box::pin((self.0)(user)))
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
/// let layer: PermissionLayer<User> = permission_required::<User>(|user| user.is_admin);
/// # let _ = layer;
/// ```
#[must_use]
pub struct PermissionLayer<U, K = DefaultSession> {
    predicate: Arc<dyn DynPredicate<U>>,
    _kind: PhantomData<fn() -> K>,
}

impl<U: AuthUser> PermissionLayer<U> {
    fn new(predicate: Arc<dyn DynPredicate<U>>) -> Self {
        Self { predicate, _kind: PhantomData }
    }
}

impl<U: AuthUser, K: SessionKind> PermissionLayer<U, K> {
    /// The same check for users logged in to the sessions of kind `Other`.
    /// Only the session kind changes: the predicate is kept.
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
    /// let layer = permission_required::<User>(|user| user.is_admin).for_kind::<AdminArea>();
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
    type Service = Guard<Inner, U, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        Guard::new(inner, Rule::Permitted(Arc::clone(&self.predicate)))
    }
}
