//! [`SessionService`], the per-request half of the layer: reading the
//! session cookie, handing the handler its [`Session`], and saving the
//! session and setting the cookie in [`ResponseFuture`].
//!
//! Applications rarely name these types; they appear in the types of
//! services wrapped by a [`SessionLayer`](crate::SessionLayer).

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
use session_core::SessionId;
use tower_service::Service;

use crate::cookie::request_cookies;
use crate::kind::{DefaultSession, SessionKind};
use crate::session::{Incoming, LayerShared, Session};

/// The service built by [`SessionLayer`](crate::SessionLayer): puts the
/// request's [`Session`] in its extensions and, once the
/// handler has answered, saves it and sets the cookie.
pub struct SessionService<Inner, K: SessionKind = DefaultSession> {
    inner: Inner,
    shared: Arc<LayerShared>,
    _kind: PhantomData<fn() -> K>,
}

impl<Inner, K: SessionKind> SessionService<Inner, K> {
    pub(crate) fn new(inner: Inner, shared: Arc<LayerShared>) -> Self {
        Self { inner, shared, _kind: PhantomData }
    }
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
    let mut seen = false;
    if shared.is_client_side() {
        // A few candidates at most: each costs a MAC check. An empty value
        // (an oversized one stands as such) is never a sealed session.
        let candidates: Vec<String> = values
            .inspect(|_| seen = true)
            .filter(|value| !value.is_empty())
            .take(MAX_SEALED_CANDIDATES)
            .map(str::to_owned)
            .collect();
        return match candidates.is_empty() {
            false => Incoming::Sealed(candidates),
            true if seen => Incoming::Malformed,
            true => Incoming::Nothing,
        };
    }
    let id = values.find_map(|value| {
        seen = true;
        value.parse::<SessionId>().ok()
    });
    match id {
        Some(id) => Incoming::Id(id),
        None if seen => {
            tracing::debug!(cookie = cookie_name, "malformed session cookie; not adopted");
            Incoming::Malformed
        }
        None => Incoming::Nothing,
    }
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
