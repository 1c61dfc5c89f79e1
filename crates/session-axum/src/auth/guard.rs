//! [`Guard`], the one service behind both route guards: the request's user,
//! then the guard's [`Rule`] decides whether the route runs.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::IntoResponse;
use http::{Extensions, Request, Response, Uri};
use tower_service::Service;

use crate::auth::context::AuthContext;
use crate::auth::login_required::login_redirect;
use crate::auth::permission::{Check, DynPredicate};
use crate::auth::rejection::{Forbidden, Unauthenticated};
use crate::auth::user::AuthUser;
use crate::kind::{DefaultSession, SessionKind};

/// What a guard lets through.
pub(crate) enum Rule<U> {
    /// Any logged-in user ([`login_required`](crate::login_required));
    /// anonymous requests are redirected to `login_url`, or get a 401.
    LoggedIn { login_url: Option<Arc<str>> },
    /// Logged-in users the predicate accepts
    /// ([`permission_required`](crate::permission_required)).
    Permitted(Arc<dyn DynPredicate<U>>),
}

impl<U> Clone for Rule<U> {
    fn clone(&self) -> Self {
        match self {
            Self::LoggedIn { login_url } => Self::LoggedIn { login_url: login_url.clone() },
            Self::Permitted(predicate) => Self::Permitted(Arc::clone(predicate)),
        }
    }
}

impl<U> fmt::Debug for Rule<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LoggedIn { login_url } => {
                f.debug_struct("LoggedIn").field("login_url", login_url).finish()
            }
            Self::Permitted(_) => f.debug_struct("Permitted").finish_non_exhaustive(),
        }
    }
}

/// The service that [`login_required`](crate::login_required) and
/// [`permission_required`](crate::permission_required) build around a
/// route; `route_layer` builds it for you.
///
/// Every method is guarded, `OPTIONS` included: the user is loaded once per
/// request (a [`CurrentUser`](crate::CurrentUser) in the handler reuses it),
/// and the guard's rule decides: the route, a 401 or a redirect to the login
/// page for anonymous requests, a 403 for a user the permission refuses.
/// CORS preflights, which carry no credentials, are a CORS layer's to answer,
/// outside the guard (see the guide's "CORS preflights").
///
/// ```
/// # #[derive(Clone)] struct User { is_admin: bool }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// use axum::{Router, routing::get};
/// use session_axum::{auth::Guard, login_required, permission_required};
/// use tower_layer::Layer;
///
/// let router: Router = Router::new().route("/", get(|| async { "hi" }));
/// let logged_in: Guard<Router, User> = login_required::<User>().layer(router.clone());
/// let admins: Guard<Router, User> =
///     permission_required::<User>(|user| user.is_admin).layer(router);
/// # let _ = (logged_in, admins);
/// ```
pub struct Guard<Inner, U, K = DefaultSession> {
    inner: Inner,
    rule: Rule<U>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner, U, K> Guard<Inner, U, K> {
    pub(crate) fn new(inner: Inner, rule: Rule<U>) -> Self {
        Self { inner, rule, _kind: PhantomData }
    }
}

impl<Inner: Clone, U, K> Clone for Guard<Inner, U, K> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.rule.clone())
    }
}

impl<Inner: fmt::Debug, U, K: SessionKind> fmt::Debug for Guard<Inner, U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .field("rule", &self.rule)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<Inner, U, K, ReqBody, ResBody> Service<Request<ReqBody>> for Guard<Inner, U, K>
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
        // The service driven to readiness goes into the future; a fresh
        // clone takes its place (the usual tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rule = self.rule.clone();
        GuardFuture::new(async move {
            if let Err(refusal) = admit::<U, K>(&rule, request.extensions(), request.uri()).await {
                return Ok(refusal);
            }
            Ok(inner.call(request).await?.map(Body::new))
        })
    }
}

/// `Ok` if `rule` lets the request to `uri` through, else the response that
/// refuses it. (The request's parts, not the request: its body need not be
/// `Sync`, and the future holds these across the user's load.)
async fn admit<U: AuthUser, K: SessionKind>(
    rule: &Rule<U>,
    extensions: &Extensions,
    uri: &Uri,
) -> Result<(), Response<Body>> {
    let (context, session) =
        AuthContext::<U, K>::from_extensions(extensions).map_err(IntoResponse::into_response)?;
    let user = context.user(&session).await.map_err(IntoResponse::into_response)?;
    match (rule, user) {
        (Rule::LoggedIn { .. }, Some(_)) => Ok(()),
        (Rule::LoggedIn { login_url: Some(login_url) }, None) => {
            let target = context
                .original_target
                .as_ref()
                .map_or_else(|| uri.to_string(), ToString::to_string);
            Err(login_redirect(login_url, &target))
        }
        (_, None) => Err(Unauthenticated.into_response()),
        (Rule::Permitted(predicate), Some(user)) => {
            let allowed = match predicate.check(user) {
                Check::Done(allowed) => allowed,
                Check::Pending(future) => future.await,
            };
            if allowed { Ok(()) } else { Err(Forbidden.into_response()) }
        }
    }
}

/// The response future of [`Guard`].
///
/// ```
/// # #[derive(Clone)] struct User;
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// use std::convert::Infallible;
/// use axum::{Router, body::Body, http::Request, routing::get};
/// use session_axum::{auth::GuardFuture, login_required};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// let router: Router = Router::new().route("/", get(|| async { "hi" }));
/// let mut guarded = login_required::<User>().layer(router);
/// let future: GuardFuture<Infallible> = guarded.call(Request::new(Body::empty()));
/// # drop(future);
/// ```
pub struct GuardFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> GuardFuture<E> {
    fn new(future: impl Future<Output = Result<Response<Body>, E>> + Send + 'static) -> Self {
        Self { inner: Box::pin(future) }
    }
}

impl<E> Future for GuardFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for GuardFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardFuture").finish_non_exhaustive()
    }
}
