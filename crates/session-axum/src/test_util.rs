//! Sessions for an application's own tests (feature `test-util`): a
//! `Cookie` header for a session that already holds given data or a
//! logged-in user, so that a test request reaches a guarded route directly
//! instead of driving the login form first.
//!
//! The session is made by the application's own layers, on its own store:
//! [`TestSessions`] sends one request through a route of its own, wrapped in
//! the [`SessionLayer`] (and [`AuthLayer`]) you give it, and returns the
//! cookie that response set. So it works on every store and cookie format,
//! and a session made here is exactly what a real login makes.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use session_axum::test_util::TestSessions;
//! use session_axum::{AuthLayer, AuthUser, CurrentUser, SessionLayer, UserLoader, login_required};
//! use session_axum::memory::MemoryStore;
//! use tower::ServiceExt;
//!
//! #[derive(Clone)]
//! struct User { id: u64, password_hash: String }
//!
//! impl AuthUser for User {
//!     type Id = u64;
//!     fn id(&self) -> u64 { self.id }
//!     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() }
//! }
//!
//! struct Users(Vec<User>);
//!
//! impl UserLoader<User> for Users {
//!     type Error = Infallible;
//!     async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
//!         Ok(self.0.iter().find(|user| user.id == *id).cloned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alice = User { id: 1, password_hash: "argon2...".into() };
//! let sessions = SessionLayer::new(MemoryStore::new());
//! let auth = AuthLayer::new(Users(vec![alice.clone()]));
//! let app = Router::new()
//!     .route("/me", get(|user: CurrentUser<User>| async move { user.id.to_string() }))
//!     .route_layer(login_required::<User>())
//!     .layer(auth.clone())
//!     .layer(sessions.clone());
//!
//! // In the test: a cookie for a session in which alice is logged in.
//! let cookie = TestSessions::new(sessions).logged_in(auth, alice).await?;
//! let request = Request::get("/me").header("cookie", cookie).body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use http::header::SET_COOKIE;
use http::{HeaderValue, Request, StatusCode};
use serde_json::{Map, Value};
use tower_service::Service;

use crate::auth::{Auth, AuthLayer, AuthRejection, AuthUser};
use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::SessionError;
use crate::{Session, SessionLayer};

/// Makes sessions for tests through the application's [`SessionLayer`]
/// (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TestSessions<K: SessionKind = DefaultSession> {
    layer: SessionLayer<K>,
}

/// Why [`TestSessions`] could not make a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestSessionError {
    /// The layers answered something else than a new session: the store is
    /// down, say (the status and body say more).
    #[error("making the test session answered {status}: {body}")]
    Refused {
        /// The response status.
        status: StatusCode,
        /// The response body, as text.
        body: String,
    },
    /// The response set no session cookie (a client-side format that
    /// cannot hold the data, say).
    #[error("making the test session set no cookie")]
    NoCookie,
}

impl TestSessions {
    /// Sessions made through `layer` (the one the application under test
    /// uses, or one on the same store and configuration).
    #[must_use]
    pub fn new(layer: SessionLayer) -> Self {
        Self { layer }
    }
}

impl<K: SessionKind> TestSessions<K> {
    /// The same for a session kind of the application's own.
    ///
    /// ```
    /// use session_axum::test_util::TestSessions;
    /// use session_axum::{SessionKind, SessionLayer, memory::MemoryStore};
    ///
    /// struct Admin;
    /// impl SessionKind for Admin {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// let layer = SessionLayer::new(MemoryStore::new()).for_kind::<Admin>();
    /// let sessions = TestSessions::for_layer(layer);
    /// # let _ = sessions;
    /// ```
    #[must_use]
    pub fn for_layer(layer: SessionLayer<K>) -> Self {
        Self { layer }
    }

    /// A `Cookie` header value for a new session holding `data` (each key
    /// set to its value, as [`Session::insert`] would).
    ///
    /// ```
    /// use session_axum::test_util::TestSessions;
    /// use session_axum::{SessionLayer, memory::MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sessions = TestSessions::new(SessionLayer::new(MemoryStore::new()));
    /// let data = serde_json::json!({ "cart": [17, 42], "theme": "dark" });
    /// let cookie = sessions.with_data(data.as_object().cloned().unwrap_or_default()).await?;
    /// assert!(cookie.to_str()?.starts_with("id="));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`TestSessionError`] if the session could not be stored.
    pub async fn with_data(
        &self,
        data: Map<String, Value>,
    ) -> Result<HeaderValue, TestSessionError> {
        let data = Arc::new(data);
        let write = post(move |session: Session<K>| async move {
            for (key, value) in data.iter() {
                session.insert(key, value).await?;
            }
            Ok::<_, SessionError>(StatusCode::NO_CONTENT)
        });
        self.cookie_from(Router::new().route("/", write)).await
    }

    /// A `Cookie` header value for a new session in which `user` is logged
    /// in, through [`Auth::login`] behind `auth` (the application's
    /// [`AuthLayer`]: its loader must find `user` when the test's request
    /// comes).
    ///
    /// # Errors
    ///
    /// [`TestSessionError`] if the login could not be stored.
    pub async fn logged_in<U: AuthUser>(
        &self,
        auth: AuthLayer<U, K>,
        user: U,
    ) -> Result<HeaderValue, TestSessionError> {
        let user = Arc::new(user);
        let login = post(move |session: Auth<U, K>| async move {
            session.login(&user).await?;
            Ok::<_, AuthRejection>(StatusCode::NO_CONTENT)
        });
        self.cookie_from(Router::new().route("/", login).layer(auth)).await
    }

    /// Sends one request to `route` inside the session layer; the cookie
    /// its response set.
    async fn cookie_from(&self, route: Router) -> Result<HeaderValue, TestSessionError> {
        let mut app = route.layer(self.layer.clone());
        let request = Request::post("/").body(Body::empty()).unwrap_or_default();
        // A router is always ready and never fails: its errors are responses.
        let ready = std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx));
        let response = match ready.await {
            Ok(()) => app.call(request).await.unwrap_or_else(|never| match never {}),
            Err(never) => match never {},
        };
        cookie_of(response).await
    }
}

/// The `name=value` of the session cookie `response` set, as a `Cookie`
/// header value.
async fn cookie_of(response: Response) -> Result<HeaderValue, TestSessionError> {
    if !response.status().is_success() {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
        return Err(TestSessionError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let set_cookie = response.headers().get(SET_COOKIE).ok_or(TestSessionError::NoCookie)?;
    let pair = set_cookie.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
    HeaderValue::from_bytes(pair).map_err(|_| TestSessionError::NoCookie)
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn a_failed_store_is_reported_with_its_status() {
        let response = (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        match cookie_of(response).await {
            Err(TestSessionError::Refused { status, body }) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(body, "down");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn no_cookie_is_reported() {
        let response = StatusCode::NO_CONTENT.into_response();
        assert!(matches!(cookie_of(response).await, Err(TestSessionError::NoCookie)));
    }

    /// The cookie carries the data to a handler of the app, on the same
    /// store: the session was stored, not only made up.
    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn a_session_with_data_is_seen_by_the_app() {
        use axum::routing::get;

        let layer = SessionLayer::new(crate::memory::MemoryStore::new());
        let data = serde_json::json!({ "theme": "dark", "cart": [17, 42] });
        let cookie = TestSessions::new(layer.clone())
            .with_data(data.as_object().cloned().unwrap_or_default())
            .await
            .unwrap();
        let read = get(|session: Session| async move {
            let theme: Option<String> = session.get("theme").await?;
            let cart: Option<Vec<u32>> = session.get("cart").await?;
            Ok::<_, SessionError>(format!("{theme:?} {cart:?}"))
        });
        let mut app = Router::new().route("/", read).layer(layer);
        let request =
            Request::get("/").header(http::header::COOKIE, cookie).body(Body::empty()).unwrap();
        let response = Service::<Request<Body>>::call(&mut app, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(body, r#"Some("dark") Some([17, 42])"#);
    }
}
