//! The route layer that checks unsafe requests: [`CsrfLayer`], its service
//! and its future.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::IntoResponse;
use http::header::ORIGIN;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::form::presented_token;
use super::origin::{SEC_FETCH_SITE, cross_origin};
use super::token::{stored_token, tokens_match};
use super::{CsrfReason, CsrfRejection, DEFAULT_MAX_FORM_BYTES};
#[cfg(doc)]
use super::{FORM_FIELD, HEADER_NAME};
use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::MissingSessionLayer;
use crate::session::Session;

/// What a [`CsrfLayer`] is configured with.
#[derive(Debug, Clone)]
pub(super) struct CsrfConfig {
    /// Origins besides the request's own allowed to post, lower case.
    trusted_origins: Vec<String>,
    max_form_bytes: usize,
}

/// Checks unsafe requests for the session's CSRF token and a same-origin
/// browser; use it as a route layer, inside the
/// [`SessionLayer`](crate::SessionLayer) of its session kind.
///
/// For `POST`, `PUT`, `PATCH`, `DELETE` (any method but `GET`, `HEAD`,
/// `OPTIONS` and `TRACE`), in order:
///
/// 1. A `Sec-Fetch-Site` header must be `same-origin` or `none`; without
///    one, an `Origin` header must be the request's own (`http://` or
///    `https://` and its `Host`). An origin given to
///    [`with_trusted_origin`](Self::with_trusted_origin) passes either way.
///    A request with neither header is not from a current browser, and
///    only the token decides. Behind a proxy that rewrites `Host`, trust
///    the public origin.
/// 2. The token, from the [`HEADER_NAME`] header, or else (for an
///    `application/x-www-form-urlencoded` body of at most
///    [`with_max_form_bytes`](Self::with_max_form_bytes)) the [`FORM_FIELD`]
///    field, must be the session's, compared in constant time.
///
/// A refused request answers [`CsrfRejection`]; a session store failing
/// while the token is looked up answers the configured error response (503
/// by default), as anywhere else.
///
/// ```
/// use axum::{Router, body::Body, http::Request, routing::post};
/// use session_axum::csrf::CsrfLayer;
/// use session_axum::{SessionLayer, memory::MemoryStore};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app: Router = Router::new()
///     .route("/delete", post(|| async { "deleted" }))
///     .route_layer(CsrfLayer::new().with_trusted_origin("https://admin.example.com"))
///     .layer(SessionLayer::new(MemoryStore::new()));
///
/// let forged = Request::post("/delete").body(Body::empty()).unwrap();
/// let response = app.oneshot(forged).await.unwrap();
/// assert_eq!(response.status(), 403);
/// # }
/// ```
pub struct CsrfLayer<K: SessionKind = DefaultSession> {
    config: Arc<CsrfConfig>,
    _kind: PhantomData<fn() -> K>,
}

impl CsrfLayer {
    /// The layer for the default [`Session`]: no trusted
    /// origins besides the request's own, forms read up to
    /// [`DEFAULT_MAX_FORM_BYTES`].
    #[must_use]
    pub fn new() -> Self {
        let config =
            CsrfConfig { trusted_origins: Vec::new(), max_form_bytes: DEFAULT_MAX_FORM_BYTES };
        Self { config: Arc::new(config), _kind: PhantomData }
    }
}

impl Default for CsrfLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: SessionKind> CsrfLayer<K> {
    /// Lets unsafe requests from `origin` through the origin check (the
    /// token is still checked): another of your sites that posts here.
    /// `origin` is as browsers send it in `Origin`: scheme, host and port
    /// if not the default, such as `https://admin.example.com` or
    /// `http://localhost:8080`.
    ///
    /// ```
    /// use session_axum::csrf::CsrfLayer;
    ///
    /// let layer = CsrfLayer::new()
    ///     .with_trusted_origin("https://admin.example.com")
    ///     .with_trusted_origin("https://shop.example.com");
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_trusted_origin(mut self, origin: impl Into<String>) -> Self {
        let mut origin = origin.into();
        // `Origin` never ends in a slash, and host names are caseless.
        while origin.ends_with('/') {
            origin.pop();
        }
        origin.make_ascii_lowercase();
        Arc::make_mut(&mut self.config).trusted_origins.push(origin);
        self
    }

    /// How much of a URL-encoded form body is read to find the token
    /// (default [`DEFAULT_MAX_FORM_BYTES`]); a larger form without the
    /// token in the header answers 413. The body is read only when the
    /// header is absent.
    ///
    /// ```
    /// use session_axum::csrf::CsrfLayer;
    ///
    /// let layer = CsrfLayer::new().with_max_form_bytes(64 * 1024);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_max_form_bytes(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.config).max_form_bytes = limit;
        self
    }

    /// The same layer for `Session<Other>`, checking the tokens of that
    /// session kind.
    ///
    /// ```
    /// use session_axum::SessionKind;
    /// use session_axum::csrf::CsrfLayer;
    ///
    /// struct Admin;
    /// impl SessionKind for Admin {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// let layer: CsrfLayer<Admin> = CsrfLayer::new().for_kind::<Admin>();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn for_kind<Other: SessionKind>(self) -> CsrfLayer<Other> {
        CsrfLayer { config: self.config, _kind: PhantomData }
    }
}

impl<K: SessionKind> Clone for CsrfLayer<K> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config), _kind: PhantomData }
    }
}

impl<K: SessionKind> fmt::Debug for CsrfLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfLayer")
            .field("kind", &K::NAME)
            .field("trusted_origins", &self.config.trusted_origins)
            .field("max_form_bytes", &self.config.max_form_bytes)
            .finish()
    }
}

impl<Inner, K: SessionKind> Layer<Inner> for CsrfLayer<K> {
    type Service = CsrfService<Inner, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        CsrfService { inner, config: Arc::clone(&self.config), _kind: PhantomData }
    }
}

/// The service built by [`CsrfLayer`]: checks unsafe requests, then calls
/// the route.
///
/// ```
/// use axum::{Router, routing::post};
/// use session_axum::csrf::{CsrfLayer, CsrfService};
/// use tower_layer::Layer;
///
/// let router: Router = Router::new().route("/", post(|| async { "posted" }));
/// let checked: CsrfService<Router> = CsrfLayer::new().layer(router);
/// # let _ = checked;
/// ```
pub struct CsrfService<Inner, K: SessionKind = DefaultSession> {
    inner: Inner,
    config: Arc<CsrfConfig>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner: Clone, K: SessionKind> Clone for CsrfService<Inner, K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), config: Arc::clone(&self.config), _kind: PhantomData }
    }
}

impl<Inner: fmt::Debug, K: SessionKind> fmt::Debug for CsrfService<Inner, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfService")
            .field("kind", &K::NAME)
            .field("config", &self.config)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<Inner, K, ReqBody, ResBody> Service<Request<ReqBody>> for CsrfService<Inner, K>
where
    Inner: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    Inner::Future: Send + 'static,
    K: SessionKind,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Inner::Error;
    type Future = CsrfFuture<Inner::Future, Inner::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method().is_safe() {
            // Nothing to check: no session lookup, no allocation.
            let future = self.inner.call(request.map(Body::new));
            return CsrfFuture { kind: Kind::Passthrough { future } };
        }
        // The service driven to readiness goes into the future; a fresh
        // clone takes its place (the usual tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let future = Box::pin(async move {
            // Parts and body apart: the body need not be `Sync`, and the
            // future holds the parts across the session's load.
            let (parts, body) = request.into_parts();
            let body = match check::<K, _>(&config, &parts, body).await {
                Ok(body) => body,
                Err(refusal) => return Ok(refusal),
            };
            Ok(inner.call(Request::from_parts(parts, body)).await?.map(Body::new))
        });
        CsrfFuture { kind: Kind::Checking { future } }
    }
}

pin_project! {
    /// The response future of [`CsrfService`]: the route's own future for
    /// safe methods, the check and then the route for the others.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use axum::{Router, body::Body, http::Request, routing::post};
    /// use session_axum::csrf::{CsrfFuture, CsrfLayer};
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    ///
    /// let router: Router = Router::new().route("/", post(|| async { "posted" }));
    /// let mut checked = CsrfLayer::new().layer(router);
    /// let future: CsrfFuture<_, Infallible> = checked.call(Request::new(Body::empty()));
    /// # drop(future);
    /// ```
    pub struct CsrfFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

/// The boxed check-then-route future of an unsafe request.
type Checking<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

pin_project! {
    #[project = KindProjection]
    enum Kind<F, E> {
        Passthrough {
            #[pin]
            future: F,
        },
        Checking {
            future: Checking<E>,
        },
    }
}

impl<F, E, ResBody> Future for CsrfFuture<F, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProjection::Passthrough { future } => {
                future.poll(cx).map(|result| result.map(|response| response.map(Body::new)))
            }
            KindProjection::Checking { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for CsrfFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfFuture").finish_non_exhaustive()
    }
}

/// The body to hand on if the unsafe request passes, else the response that
/// refuses it.
async fn check<K, B>(config: &CsrfConfig, parts: &Parts, body: B) -> Result<Body, Response<Body>>
where
    K: SessionKind,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let session = parts
        .extensions
        .get::<Session<K>>()
        .cloned()
        .ok_or_else(|| MissingSessionLayer::new(K::NAME).into_response())?;
    let refuse = |reason: CsrfReason| {
        let responder = Arc::clone(&session.inner.layer.config.error_responder);
        let span = tracing::warn_span!("csrf", method = %parts.method, path = parts.uri.path());
        span.in_scope(|| CsrfRejection::with_responder(reason, responder).into_response())
    };

    if let Some(why) = cross_origin(&parts.headers, &parts.uri, &config.trusted_origins) {
        tracing::debug!(
            why,
            origin = ?parts.headers.get(ORIGIN),
            sec_fetch_site = ?parts.headers.get(SEC_FETCH_SITE),
            "cross-origin unsafe request"
        );
        return Err(refuse(CsrfReason::CrossOrigin));
    }
    // A store failure is an outage, not a forgery: the normal error response.
    let stored = stored_token(&session).await.map_err(IntoResponse::into_response)?;
    let (presented, body) =
        presented_token(&parts.headers, body, config.max_form_bytes).await.map_err(refuse)?;
    match (stored, presented) {
        (_, None) => Err(refuse(CsrfReason::MissingToken)),
        (None, Some(_)) => Err(refuse(CsrfReason::NoStoredToken)),
        (Some(stored), Some(presented)) if tokens_match(&stored, &presented) => Ok(body),
        (Some(_), Some(_)) => Err(refuse(CsrfReason::WrongToken)),
    }
}
