//! CSRF protection for form posts: a per-session token that every unsafe
//! request (`POST`, `PUT`, `PATCH`, `DELETE`: anything but `GET`, `HEAD`,
//! `OPTIONS` and `TRACE`) must send back, and a same-origin check in front
//! of it.
//!
//! - [`CsrfToken`] is the extractor for pages with forms: it gives the
//!   session's token, making one on first use (so visitors who never see a
//!   form get no session for it). Render it with
//!   [`hidden_input`](CsrfToken::hidden_input), or send
//!   [`as_str`](CsrfToken::as_str) in the [`HEADER_NAME`] header from
//!   scripts.
//! - [`CsrfLayer`] is the route layer that checks unsafe requests: first
//!   that the browser does not say they come from another origin
//!   (`Sec-Fetch-Site`, else `Origin` against `Host`), then the token, from
//!   the [`HEADER_NAME`] header or else the [`FORM_FIELD`] field of an
//!   `application/x-www-form-urlencoded` body. The body is handed on
//!   untouched, so the handler's [`Form`](axum::Form) still sees every field.
//!   Safe requests pass unchecked.
//!
//! The token lives under one key of the session ([`CSRF_KEY`]), so it works
//! on every server-side store and in cookie sessions alike. It dies with the
//! session (logout), and [`Auth::login`](crate::Auth::login) drops it, so a
//! token seen before a login (on the login page, or planted by an attacker)
//! is refused after it.
//!
//! A refused request answers 403 through the
//! [`ErrorResponder`]'s
//! [`csrf_rejected`](ErrorResponder::csrf_rejected), and the
//! log says why ([`CsrfReason`]); the client is not told which check failed.
//!
//! ```
//! use axum::response::{Html, Redirect};
//! use axum::routing::get;
//! use axum::{Form, Router};
//! use session_axum::csrf::{CsrfLayer, CsrfToken};
//! use session_axum::{SessionLayer, memory::MemoryStore};
//!
//! async fn comment_form(token: CsrfToken) -> Html<String> {
//!     Html(format!(
//!         r#"<form method="post">{}<textarea name="text"></textarea><button>Send</button></form>"#,
//!         token.hidden_input()
//!     ))
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Comment {
//!     text: String,
//! }
//!
//! // Only reached with the right token: the layer checked it.
//! async fn post_comment(Form(comment): Form<Comment>) -> Redirect {
//!     // ... save comment.text ...
//!     # let _ = comment.text;
//!     Redirect::to("/comments")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/comments", get(comment_form).post(post_comment))
//!     .route_layer(CsrfLayer::new())
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! Multipart (`multipart/form-data`) bodies are not searched for the token:
//! send it in the [`HEADER_NAME`] header with them.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ErrorResponder;
use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::{MissingSessionLayer, SessionError};
use crate::session::Session;

/// The session key the token is kept under, as a string. Do not use it for
/// anything else.
pub const CSRF_KEY: &str = "_csrf";

/// The form field [`CsrfLayer`] reads the token from, and
/// [`CsrfToken::hidden_input`] renders.
pub const FORM_FIELD: &str = "csrf_token";

/// The request header [`CsrfLayer`] reads the token from, before any form
/// field: for scripts (`fetch`) and bodies other than URL-encoded forms.
///
/// ```
/// use session_axum::csrf::HEADER_NAME;
///
/// assert_eq!(HEADER_NAME, "x-csrf-token");
/// ```
pub const HEADER_NAME: HeaderName = HeaderName::from_static("x-csrf-token");

/// How large a URL-encoded form body [`CsrfLayer`] reads by default to find
/// the token in it: 2 MiB, axum's own default body limit.
pub const DEFAULT_MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Characters in a token: 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// The `store` of the [`Error::Backend`](session_core::Error::Backend) for a
/// failing OS random number generator.
const RNG_STORE: &str = "random number generator";

/// The session's CSRF token, for the forms of a page: the extractor makes
/// one on first use and keeps it in the session (creating the session if
/// there is none).
///
/// It needs the [`SessionLayer`](crate::SessionLayer) for `K` around the
/// route (not a [`CsrfLayer`]: pages that show forms are usually `GET`s).
///
/// ```
/// use axum::response::Html;
/// use session_axum::csrf::CsrfToken;
///
/// async fn settings(token: CsrfToken) -> Html<String> {
///     Html(format!(
///         r#"<meta name="csrf-token" content="{}">
///            <form method="post" action="/settings">{}<button>Save</button></form>"#,
///         token.as_str(),
///         token.hidden_input(),
///     ))
/// }
/// # let _: axum::Router = axum::Router::new().route("/settings", axum::routing::get(settings));
/// ```
pub struct CsrfToken<K: SessionKind = DefaultSession> {
    token: Arc<str>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> CsrfToken<K> {
    fn new(token: String) -> Self {
        Self { token: token.into(), _kind: PhantomData }
    }

    /// The token of `session`, made and stored if it has none: what the
    /// extractor does, for handlers that need the token after changing the
    /// session, say after a login, which drops the old one.
    ///
    /// ```
    /// use axum::response::Html;
    /// use session_axum::csrf::CsrfToken;
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn change_password(auth: Auth<User>, user: User) -> Result<Html<String>, AuthRejection> {
    ///     auth.login(&user).await?;
    ///     // A token extracted before the login would be refused now.
    ///     let token = CsrfToken::from_session(auth.session()).await?;
    ///     Ok(Html(format!(r#"Saved. <form method="post">{}...</form>"#, token.hidden_input())))
    /// }
    /// # let _ = change_password;
    /// ```
    ///
    /// # Errors
    ///
    /// If the store fails while loading or locking the session, or the OS
    /// random number generator fails (an
    /// [`Error::Backend`](session_core::Error::Backend); 503 by default).
    pub async fn from_session(session: &Session<K>) -> Result<Self, SessionError> {
        if let Some(token) = stored_token(session).await? {
            return Ok(Self::new(token));
        }
        // Two pages of one session made at once would each store a token,
        // the last save winning and the other page's forms failing. Under
        // the lock (which keeps this request's earlier changes) the second
        // request sees the first one's token.
        session.lock_keeping_changes().await?;
        if let Some(token) = stored_token(session).await? {
            return Ok(Self::new(token));
        }
        let token =
            new_token().map_err(|e| session.error(session_core::Error::backend(RNG_STORE, e)))?;
        session.insert(CSRF_KEY, &token).await?;
        Ok(Self::new(token))
    }

    /// The token: 43 characters of base64url, safe in HTML attributes and
    /// headers as it is.
    ///
    /// ```
    /// use session_axum::csrf::CsrfToken;
    ///
    /// fn meta_tag(token: &CsrfToken) -> String {
    ///     format!(r#"<meta name="csrf-token" content="{}">"#, token.as_str())
    /// }
    /// # let _ = meta_tag;
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The hidden form field that carries the token:
    /// `<input type="hidden" name="csrf_token" value="...">`.
    ///
    /// ```
    /// use session_axum::csrf::CsrfToken;
    ///
    /// fn form(token: &CsrfToken) -> String {
    ///     format!(r#"<form method="post">{}<button>Delete</button></form>"#, token.hidden_input())
    /// }
    /// # let _ = form;
    /// ```
    #[must_use]
    pub fn hidden_input(&self) -> String {
        // No escaping needed: only well-formed (base64url) tokens get here.
        format!(r#"<input type="hidden" name="{FORM_FIELD}" value="{}">"#, self.token)
    }
}

impl<K: SessionKind> Clone for CsrfToken<K> {
    fn clone(&self) -> Self {
        Self { token: Arc::clone(&self.token), _kind: PhantomData }
    }
}

impl<K: SessionKind> fmt::Debug for CsrfToken<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: it stays out of debug logs.
        f.debug_struct("CsrfToken").field("kind", &K::NAME).finish_non_exhaustive()
    }
}

impl<S, K> FromRequestParts<S> for CsrfToken<K>
where
    S: Send + Sync,
    K: SessionKind,
{
    type Rejection = CsrfTokenRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = <Session<K> as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(Self::from_session(&session).await?)
    }
}

/// Why the [`CsrfToken`] extractor failed.
///
/// ```
/// use axum::response::{Html, IntoResponse, Response};
/// use session_axum::csrf::{CsrfToken, CsrfTokenRejection};
///
/// async fn page(token: Result<CsrfToken, CsrfTokenRejection>) -> Response {
///     match token {
///         Ok(token) => Html(token.hidden_input()).into_response(),
///         Err(rejection) => rejection.into_response(),
///     }
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(page));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CsrfTokenRejection {
    /// The session store (or the OS random number generator) failed: the
    /// configured error response (503 by default).
    Session(SessionError),
    /// No [`SessionLayer`](crate::SessionLayer) for the session kind: 500.
    MissingSessionLayer(MissingSessionLayer),
}

impl fmt::Display for CsrfTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(inner) => inner.fmt(f),
            Self::MissingSessionLayer(inner) => inner.fmt(f),
        }
    }
}

impl std::error::Error for CsrfTokenRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Session(inner) => Some(inner),
            Self::MissingSessionLayer(inner) => Some(inner),
        }
    }
}

impl IntoResponse for CsrfTokenRejection {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Session(inner) => inner.into_response(),
            Self::MissingSessionLayer(inner) => inner.into_response(),
        }
    }
}

impl From<SessionError> for CsrfTokenRejection {
    fn from(inner: SessionError) -> Self {
        Self::Session(inner)
    }
}

impl From<MissingSessionLayer> for CsrfTokenRejection {
    fn from(inner: MissingSessionLayer) -> Self {
        Self::MissingSessionLayer(inner)
    }
}

/// Why a [`CsrfLayer`] refused a request: logged, and given to
/// [`ErrorResponder::csrf_rejected`], never told to the client.
///
/// ```
/// use session_axum::csrf::CsrfReason;
///
/// assert_eq!(CsrfReason::WrongToken.status(), 403);
/// assert_eq!(CsrfReason::FormTooLarge.status(), 413);
/// assert_eq!(CsrfReason::MissingToken.to_string(), "no token in the x-csrf-token header or the csrf_token form field");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CsrfReason {
    /// `Sec-Fetch-Site`, or `Origin` against `Host` and the trusted origins,
    /// says the request comes from another origin.
    CrossOrigin,
    /// No token in the header or the form.
    MissingToken,
    /// The session holds no token: there is no session (it expired, or was
    /// logged out), or the token was dropped at a login.
    NoStoredToken,
    /// The token is not the session's.
    WrongToken,
    /// The URL-encoded form is larger than the layer reads
    /// ([`CsrfLayer::with_max_form_bytes`]): 413.
    FormTooLarge,
    /// The body could not be read (the client went away, say): 400.
    UnreadableBody,
}

impl CsrfReason {
    /// The status of the default response: 403, but 413 for
    /// [`FormTooLarge`](Self::FormTooLarge) and 400 for
    /// [`UnreadableBody`](Self::UnreadableBody).
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::CrossOrigin | Self::MissingToken | Self::NoStoredToken | Self::WrongToken => {
                StatusCode::FORBIDDEN
            }
            Self::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for CsrfReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CrossOrigin => "the browser says the request comes from another origin",
            Self::MissingToken => {
                "no token in the x-csrf-token header or the csrf_token form field"
            }
            Self::NoStoredToken => {
                "the session holds no token (no session, expired, logged out, or a login since)"
            }
            Self::WrongToken => "the token is not the session's",
            Self::FormTooLarge => "the form is larger than the layer reads to find the token",
            Self::UnreadableBody => "the request body could not be read",
        })
    }
}

/// A request refused by a [`CsrfLayer`].
///
/// It answers through the session layer's
/// [`ErrorResponder::csrf_rejected`] (by default
/// [`default_response`](Self::default_response): 403 with a short body that
/// does not say which check failed), and logs the [`reason`](Self::reason)
/// at warn level.
///
/// ```
/// use axum::response::IntoResponse;
/// use session_axum::csrf::{CsrfReason, CsrfRejection};
///
/// let rejection = CsrfRejection::new(CsrfReason::CrossOrigin);
/// assert_eq!(rejection.reason(), CsrfReason::CrossOrigin);
/// assert_eq!(
///     rejection.to_string(),
///     "CSRF check failed: the browser says the request comes from another origin"
/// );
/// assert_eq!(rejection.into_response().status(), 403);
/// ```
#[derive(thiserror::Error)]
#[error("CSRF check failed: {reason}")]
pub struct CsrfRejection {
    reason: CsrfReason,
    /// The session layer's responder; `None` answers the default response.
    responder: Option<Arc<dyn ErrorResponder>>,
}

impl CsrfRejection {
    /// A rejection for `reason` that answers the default response (the
    /// layer's rejections answer through the configured responder): for
    /// testing a responder, say.
    #[must_use]
    pub fn new(reason: CsrfReason) -> Self {
        Self { reason, responder: None }
    }

    fn with_responder(reason: CsrfReason, responder: Arc<dyn ErrorResponder>) -> Self {
        Self { reason, responder: Some(responder) }
    }

    /// Why the request was refused.
    #[must_use]
    pub fn reason(&self) -> CsrfReason {
        self.reason
    }

    /// The status of the default response ([`CsrfReason::status`]).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The response of [`ErrorResponder::csrf_rejected`] unless a responder
    /// replaces it: [`status`](Self::status) with a plain-text body that
    /// does not say which check failed.
    ///
    /// ```
    /// use session_axum::csrf::{CsrfReason, CsrfRejection};
    ///
    /// let response = CsrfRejection::new(CsrfReason::MissingToken).default_response();
    /// assert_eq!(response.status(), 403);
    /// ```
    #[must_use]
    pub fn default_response(&self) -> axum::response::Response {
        let body = match self.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "Form too large.\n",
            StatusCode::BAD_REQUEST => "Bad request.\n",
            _ => "CSRF check failed: reload the page and try again.\n",
        };
        (self.status(), body).into_response()
    }
}

impl fmt::Debug for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfRejection").field("reason", &self.reason).finish_non_exhaustive()
    }
}

impl IntoResponse for CsrfRejection {
    fn into_response(self) -> axum::response::Response {
        tracing::warn!(reason = ?self.reason, "{self}; request refused");
        match &self.responder {
            Some(responder) => responder.csrf_rejected(&self),
            None => self.default_response(),
        }
    }
}

/// What a [`CsrfLayer`] is configured with.
#[derive(Debug, Clone)]
struct CsrfConfig {
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

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why the browser's headers say the request comes from another origin, or
/// `None` if they do not.
fn cross_origin(headers: &HeaderMap, uri: &Uri, trusted: &[String]) -> Option<&'static str> {
    let origin = headers.get(ORIGIN).map(|origin| origin.as_bytes());
    let trusted_origin = origin
        .is_some_and(|origin| trusted.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(origin)));
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        // `none`: the user's own doing (a bookmark, the address bar).
        return (!matches!(site.as_bytes(), b"same-origin" | b"none") && !trusted_origin)
            .then_some("Sec-Fetch-Site is neither same-origin nor none");
    }
    // Older browsers send no Sec-Fetch-Site, but they do send Origin.
    let Some(origin) = origin else {
        // Not from a browser that rides cookies across sites: the token decides.
        return None;
    };
    if trusted_origin {
        return None;
    }
    // HTTP/2 carries the host in the URI's authority instead of `Host`.
    let host = headers
        .get(HOST)
        .map(|host| host.as_bytes())
        .or_else(|| uri.authority().map(|authority| authority.as_str().as_bytes()));
    match host {
        Some(host) if is_origin_of(origin, host) => None,
        Some(_) => Some("Origin is not the request's own origin"),
        None => Some("Origin without a Host to compare it with"),
    }
}

/// Whether `origin` is `http://` or `https://` followed by `host`.
fn is_origin_of(origin: &[u8], host: &[u8]) -> bool {
    [b"https://".as_slice(), b"http://"].iter().any(|scheme| {
        origin.strip_prefix(*scheme).is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

/// The token the request presents, and its body to hand on (read into
/// memory if the token had to be looked for in it).
async fn presented_token<B>(
    headers: &HeaderMap,
    body: B,
    max_form_bytes: usize,
) -> Result<(Option<Vec<u8>>, Body), CsrfReason>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if let Some(token) = headers.get(HEADER_NAME) {
        return Ok((Some(token.as_bytes().to_vec()), Body::new(body)));
    }
    if !is_urlencoded_form(headers) {
        return Ok((None, Body::new(body)));
    }
    let bytes = read_limited(Body::new(body), max_form_bytes).await?;
    let token = form_field(&bytes, FORM_FIELD);
    Ok((token, Body::from(bytes)))
}

fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The whole body, if it is at most `limit` bytes. Trailers are dropped: a
/// URL-encoded form has none.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, CsrfReason> {
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > limit {
        return Err(CsrfReason::FormTooLarge);
    }
    let mut buffer = Vec::with_capacity(declared);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "reading the form body failed");
            CsrfReason::UnreadableBody
        })?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - buffer.len() {
                return Err(CsrfReason::FormTooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// The value of the first field called `name` in a URL-encoded form,
/// percent-decoded.
fn form_field(form: &[u8], name: &str) -> Option<Vec<u8>> {
    form.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        (percent_decode(key) == name.as_bytes()).then(|| percent_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; a `%` not followed by two hex digits stays as it is (as in the
/// WHATWG URL standard).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = input
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(input.get(i + 2).copied().and_then(hex));
                if let Some((high, low)) = pair {
                    out.push(high << 4 | low);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Whether the presented token is the stored one, in time that does not
/// depend on where they differ (the length of a token is no secret).
fn tokens_match(stored: &str, presented: &[u8]) -> bool {
    stored.as_bytes().ct_eq(presented).into()
}

/// The session's token, if it holds a well-formed one. Anything else under
/// the key counts as none, and is replaced by the next [`CsrfToken`].
async fn stored_token<K: SessionKind>(
    session: &Session<K>,
) -> Result<Option<String>, SessionError> {
    session
        .read(|data| {
            let token = data?.get_value(CSRF_KEY).and_then(Value::as_str)?;
            is_well_formed(token).then(|| token.to_owned())
        })
        .await
}

/// 32 bytes from the OS CSPRNG, in base64url without padding.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` is what [`new_token`] makes: only such tokens are
/// rendered unescaped into HTML.
fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && URL_SAFE_NO_PAD.decode(token).is_ok_and(|bytes| bytes.len() == TOKEN_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), TOKEN_BYTES);
        assert!(is_well_formed(&token));
        assert_ne!(token, new_token().unwrap());
    }

    #[test]
    fn malformed_stored_tokens_are_refused() {
        let token = new_token().unwrap();
        let body = &token[..TOKEN_CHARS - 1];
        for bad in [
            String::new(),
            body.to_owned(),
            format!("{token}A"),
            // The standard alphabet, padding, a quote: not base64url.
            format!("{body}+"),
            format!("{body}="),
            format!("\"{body}"),
            // Right length, but the last character's unused low bits set:
            // not what encoding 32 bytes makes.
            format!("{body}B"),
            "<script>alert(1)</script>AAAAAAAAAAAAAAAAAA".to_owned(),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?}");
        }
    }

    #[test]
    fn the_comparison_needs_every_byte() {
        let token = new_token().unwrap();
        assert!(tokens_match(&token, token.as_bytes()));
        assert!(!tokens_match(&token, b""));
        assert!(!tokens_match(&token, &token.as_bytes()[..TOKEN_CHARS - 1]));
        let mut longer = token.clone().into_bytes();
        longer.push(b'A');
        assert!(!tokens_match(&token, &longer));
        for at in [0, TOKEN_CHARS / 2, TOKEN_CHARS - 1] {
            let mut other = token.clone().into_bytes();
            other[at] = if other[at] == b'A' { b'B' } else { b'A' };
            assert!(!tokens_match(&token, &other), "differs at {at}");
        }
    }

    #[test]
    fn form_fields_are_found_and_decoded() {
        assert_eq!(form_field(b"a=1&csrf_token=abc&b=2", "csrf_token"), Some(b"abc".to_vec()));
        assert_eq!(
            form_field(b"csrf_token=first&csrf_token=second", "csrf_token"),
            Some(b"first".to_vec())
        );
        assert_eq!(form_field(b"csrf%5Ftoken=a%2Db+c", "csrf_token"), Some(b"a-b c".to_vec()));
        assert_eq!(form_field(b"csrf_token", "csrf_token"), Some(Vec::new()));
        assert_eq!(form_field(b"xcsrf_token=1&csrf_tokenx=2", "csrf_token"), None);
        assert_eq!(form_field(b"", "csrf_token"), None);
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4".to_vec());
        assert_eq!(percent_decode(b"%41%e9"), vec![b'A', 0xe9]);
    }

    #[test]
    fn origins() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let uri = Uri::from_static("/");
        let trusted = vec!["https://admin.example.com".to_owned()];
        let allowed = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[("sec-fetch-site", "same-site"), ("origin", "https://admin.example.com")]),
            headers(&[("origin", "https://example.com"), ("host", "example.com")]),
            headers(&[("origin", "http://localhost:3000"), ("host", "localhost:3000")]),
            headers(&[("origin", "https://Example.COM"), ("host", "example.com")]),
            headers(&[("origin", "https://admin.example.com"), ("host", "example.com")]),
        ];
        for allowed in allowed {
            assert_eq!(cross_origin(&allowed, &uri, &trusted), None, "{allowed:?}");
        }
        let refused = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://example.com"),
                ("host", "example.com"),
            ]),
            headers(&[("origin", "https://evil.example"), ("host", "example.com")]),
            headers(&[("origin", "null"), ("host", "example.com")]),
            headers(&[("origin", "ftp://example.com"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com.evil.example"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com:8443"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com")]),
        ];
        for refused in refused {
            assert!(cross_origin(&refused, &uri, &trusted).is_some(), "{refused:?}");
        }
        // HTTP/2: the host is in the URI.
        let h2 = Uri::from_static("https://example.com/form");
        assert_eq!(cross_origin(&headers(&[("origin", "https://example.com")]), &h2, &[]), None);
    }

    #[tokio::test]
    async fn forms_are_read_up_to_the_limit_sized_or_streamed() {
        fn form() -> Body {
            Body::from(vec![b'a'; 100])
        }
        // Streamed: no size hint, so the limit is enforced while reading.
        fn streamed() -> Body {
            Body::from_stream(form().into_data_stream())
        }
        assert_eq!(streamed().size_hint().lower(), 0);
        for body in [form as fn() -> Body, streamed] {
            assert_eq!(read_limited(body(), 100).await.unwrap().len(), 100);
            assert_eq!(read_limited(body(), 99).await, Err(CsrfReason::FormTooLarge));
        }
        assert_eq!(read_limited(Body::empty(), 0).await.unwrap().len(), 0);
    }

    #[test]
    fn content_types() {
        let with = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(CONTENT_TYPE, value.parse().unwrap());
            map
        };
        assert!(is_urlencoded_form(&with("application/x-www-form-urlencoded")));
        assert!(is_urlencoded_form(&with("Application/X-WWW-Form-URLEncoded; charset=UTF-8")));
        assert!(!is_urlencoded_form(&with("multipart/form-data; boundary=x")));
        assert!(!is_urlencoded_form(&with("application/json")));
        assert!(!is_urlencoded_form(&HeaderMap::new()));
    }
}
