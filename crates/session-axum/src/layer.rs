//! [`SessionLayer`] and its service.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes, HttpBody};
use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use session_core::{CookieFormat, LockingStore, SessionId};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{ConfigError, SessionConfig, is_token};
use crate::cookie::request_cookies;
use crate::kind::{DefaultSession, SessionKind};
use crate::session::{Incoming, LayerShared, Mode, Session};

/// Adds a [`Session<K>`](Session) to every request and saves it after the
/// handler.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{Session, SessionConfig, SessionLayer, memory::MemoryStore};
///
/// async fn handler(session: Session) -> String {
///     session.get::<String>("name").await.ok().flatten().unwrap_or_default()
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(SessionLayer::new(MemoryStore::new()).with_config(SessionConfig::default().with_cookie_name("sid")).expect("a valid session config"));
/// ```
pub struct SessionLayer<K: SessionKind = DefaultSession> {
    shared: Arc<LayerShared>,
    _kind: PhantomData<fn() -> K>,
}

impl SessionLayer {
    /// A layer for the default [`Session`], on `store`, with the default
    /// [`SessionConfig`].
    pub fn new(store: impl LockingStore) -> Self {
        Self::from_store(Arc::new(store))
    }

    /// A layer for the default [`Session`] kept entirely in the cookie,
    /// sealed by `format` (Fernet, JWT or signed; see the `cookie-*`
    /// features).
    ///
    /// The same [`Session`] API applies, with the limits of client-side
    /// state: nothing is stored on the server, so [`Session::lock`] cannot
    /// serialize requests (concurrent writes are last-writer-wins), a copied
    /// cookie stays valid until its deadline even after logout, and the
    /// sealed session must fit in a 4096-byte cookie (a larger one fails the
    /// request and the client keeps its previous cookie).
    pub fn client_side(format: impl CookieFormat) -> Self {
        Self::from_format(Arc::new(format))
    }
}

impl<K: SessionKind> SessionLayer<K> {
    /// A layer for `Session<K>` on a store shared with other layers or code.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_axum::{SessionKind, SessionLayer, core::LockingStore, memory::MemoryStore};
    ///
    /// struct Cart;
    /// impl SessionKind for Cart {
    ///     const NAME: &'static str = "cart";
    /// }
    ///
    /// let store: Arc<dyn LockingStore> = Arc::new(MemoryStore::new());
    /// let layer = SessionLayer::<Cart>::from_store(Arc::clone(&store));
    /// assert_eq!(layer.config().cookie_name(), "cart");
    /// ```
    #[must_use]
    pub fn from_store(store: Arc<dyn LockingStore>) -> Self {
        Self::from_mode(Mode::ServerSide(store), SessionConfig::default())
    }

    /// A client-side layer for `Session<K>` (see [`SessionLayer::client_side`]).
    #[must_use]
    pub fn from_format(format: Arc<dyn CookieFormat>) -> Self {
        Self::from_mode(Mode::ClientSide(format), SessionConfig::default())
    }

    fn from_mode(mode: Mode, config: SessionConfig) -> Self {
        const {
            assert!(
                is_token(K::COOKIE_NAME),
                "SessionKind::COOKIE_NAME must be a non-empty HTTP token"
            );
        }
        let shared = LayerShared::new(mode, config.resolved_for(K::COOKIE_NAME));
        Self { shared: Arc::new(shared), _kind: PhantomData }
    }

    fn mode(&self) -> Mode {
        match &self.shared.mode {
            Mode::ServerSide(store) => Mode::ServerSide(Arc::clone(store)),
            Mode::ClientSide(format) => Mode::ClientSide(Arc::clone(format)),
        }
    }

    /// Replaces the configuration, once its cookie attributes are checked
    /// together.
    ///
    /// ```
    /// use session_axum::{SessionConfig, SessionLayer, memory::MemoryStore};
    ///
    /// # fn main() -> Result<(), session_axum::config::ConfigError> {
    /// let layer = SessionLayer::new(MemoryStore::new())
    ///     .with_config(SessionConfig::default().with_cookie_name("sid").with_host_prefix())?;
    /// assert_eq!(layer.config().cookie_name(), "__Host-sid");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for attributes browsers would reject or that
    /// contradict each other: a cookie name that is not an HTTP token, a
    /// `__Host-` cookie that is not `Secure`, has a `Domain` or a path other
    /// than `/`, `SameSite=None` without `Secure`, a malformed path or domain.
    pub fn with_config(self, config: SessionConfig) -> Result<Self, ConfigError> {
        let config = config.resolved_for(K::COOKIE_NAME);
        config.validate()?;
        Ok(Self::from_mode(self.mode(), config))
    }

    /// The same store and configuration for another session kind,
    /// `Session<Other>`. Its cookie is named after `Other` unless the
    /// configuration names one
    /// ([`SessionConfig::with_cookie_name`](crate::SessionConfig::with_cookie_name)):
    /// give each kind its own name then.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use session_axum::{Session, SessionKind, SessionLayer, memory::MemoryStore};
    ///
    /// struct Admin;
    /// impl SessionKind for Admin {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// async fn handler(visitor: Session, admin: Session<Admin>) -> &'static str {
    ///     "two independent sessions, two cookies: `id` and `admin`"
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(handler))
    ///     .layer(SessionLayer::new(MemoryStore::new()))
    ///     .layer(SessionLayer::new(MemoryStore::new()).for_kind::<Admin>());
    /// ```
    #[must_use]
    pub fn for_kind<Other: SessionKind>(self) -> SessionLayer<Other> {
        SessionLayer::from_mode(self.mode(), self.shared.config.clone())
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
}

impl<K: SessionKind> Clone for SessionLayer<K> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), _kind: PhantomData }
    }
}

impl<K: SessionKind> fmt::Debug for SessionLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("kind", &K::NAME)
            .field("mode", &self.shared.mode)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<Inner, K: SessionKind> Layer<Inner> for SessionLayer<K> {
    type Service = SessionService<Inner, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        SessionService { inner, shared: Arc::clone(&self.shared), _kind: PhantomData }
    }
}

/// The service built by [`SessionLayer`].
pub struct SessionService<Inner, K: SessionKind = DefaultSession> {
    inner: Inner,
    shared: Arc<LayerShared>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner: Clone, K: SessionKind> Clone for SessionService<Inner, K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared), _kind: PhantomData }
    }
}

impl<Inner: fmt::Debug, K: SessionKind> fmt::Debug for SessionService<Inner, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("kind", &K::NAME)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<Inner, K, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<Inner, K>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: SessionKind,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Inner::Error;
    type Future = ResponseFuture<Inner::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let incoming = incoming(&request, &self.shared);
        let session = Session::<K>::new(Arc::clone(&self.shared), incoming);
        request.extensions_mut().insert(session.clone());
        let future = self.inner.call(request);
        ResponseFuture { stage: Stage::Handling { future, session: Some(session) } }
    }
}

/// How many same-named client-side cookies are tried at most.
const MAX_SEALED_CANDIDATES: usize = 4;

/// What the request's session cookies carry: for server-side sessions the
/// first well-formed id, for client-side ones the values (opened lazily).
fn incoming<B>(request: &Request<B>, shared: &LayerShared) -> Incoming {
    let cookie_name = shared.config.cookie_name();
    let mut values = request_cookies(request.headers(), cookie_name);
    if shared.is_client_side() {
        // A few candidates at most: each costs a MAC check.
        let candidates: Vec<String> =
            values.take(MAX_SEALED_CANDIDATES).map(str::to_owned).collect();
        return if candidates.is_empty() {
            Incoming::Nothing
        } else {
            Incoming::Sealed(candidates)
        };
    }
    let mut seen = false;
    let id = values.find_map(|value| {
        seen = true;
        value.parse::<SessionId>().ok()
    });
    if id.is_none() && seen {
        tracing::debug!(cookie = cookie_name, "malformed session cookie ignored");
    }
    id.map_or(Incoming::Nothing, Incoming::Id)
}

async fn finish<K: SessionKind>(
    session: &Session<K>,
    mut response: Response<Body>,
) -> Response<Body> {
    match session.inner.finish(response.status()).await {
        Ok(outcome) => {
            let headers = response.headers_mut();
            if outcome.accessed {
                headers.append(VARY, HeaderValue::from_static("Cookie"));
            }
            if let Some(cookie) = outcome.set_cookie {
                headers.append(SET_COOKIE, cookie);
                // A response that sets a session cookie must never be served
                // from a shared cache to someone else.
                if !headers.contains_key(CACHE_CONTROL) {
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, kind = K::NAME, "saving the session failed");
            session.inner.layer.config.error_responder.respond(&error)
        }
    }
}

pin_project! {
    /// The response future of [`SessionService`]: the handler's future, then,
    /// only if the handler used the session, saving it.
    pub struct ResponseFuture<F, K: SessionKind> {
        #[pin]
        stage: Stage<F, K>,
    }
}

pin_project! {
    #[project = StageProjection]
    enum Stage<F, K: SessionKind> {
        Handling {
            #[pin]
            future: F,
            session: Option<Session<K>>,
        },
        Saving {
            future: Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
        },
    }
}

impl<F, K, ResBody, E> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    K: SessionKind,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut stage = self.project().stage;
        loop {
            match stage.as_mut().project() {
                StageProjection::Handling { future, session } => {
                    let response = ready!(future.poll(cx))?.map(Body::new);
                    let Some(session) = session.take().filter(|s| !s.inner.is_untouched()) else {
                        // Never used: nothing to save, no headers to add, no allocation.
                        return Poll::Ready(Ok(response));
                    };
                    let saving = Box::pin(async move { finish(&session, response).await });
                    stage.set(Stage::Saving { future: saving });
                }
                StageProjection::Saving { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

impl<F, K: SessionKind> fmt::Debug for ResponseFuture<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").field("kind", &K::NAME).finish_non_exhaustive()
    }
}
