//! Shared auth HTTP tests: `auth_tests!(make_store)` runs every scenario
//! through the real `SessionLayer` + `AuthLayer` on one store. Each store's
//! test file invokes it; users get random ids, so several test runs can share
//! one store server.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod races;
// Shared with the session tests: their common handlers, and the wire client
// and request target (which need only this module's `Reply` and `send`).
#[path = "../common/handlers.rs"]
pub mod handlers;
#[path = "../common/target.rs"]
pub mod target;
#[path = "../common/wire.rs"]
pub mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Router, http::StatusCode};
use http::{HeaderMap, Method, Request, header};
use http_body_util::BodyExt;
use session_axum::auth::safe_next;
use session_axum::auth::{AuthRejection, LoginOptions, permission_required_async};
use session_axum::core::{
    Error, LockGuard, LockOptions, Record, SessionId, SessionStore, StorageKey, Timestamp,
    async_trait,
};
use session_axum::core::{LockingStore, SessionExpiry};
use session_axum::csrf::{CsrfLayer, CsrfToken};
use session_axum::{
    Auth, AuthLayer, AuthUser, CurrentUser, Session, SessionConfig, SessionError, SessionLayer,
    UserLoader, login_required, permission_required,
};
use tower::ServiceExt;

/// A user whose "password hash" is the password itself (the tests only need
/// it to change).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TestUser {
    pub id: String,
    pub name: String,
    pub password: String,
    pub admin: bool,
}

impl AuthUser for TestUser {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

/// The user database: counts loads and fails on demand. In memory, or (for
/// app servers in several processes) a directory of one JSON file per user.
#[derive(Debug, Clone, Default)]
pub struct TestUsers {
    users: Arc<RwLock<HashMap<String, TestUser>>>,
    /// Where the users live instead of `users`, when they are shared.
    dir: Option<Arc<FsPath>>,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl TestUsers {
    /// Adds a user with a random id (unique across test runs on a shared store).
    pub fn add(&self, name: &str, admin: bool) -> TestUser {
        let user = TestUser {
            id: format!("{name}-{}", SessionId::random().expose()),
            name: name.to_owned(),
            password: "first password".to_owned(),
            admin,
        };
        self.put(&user);
        user
    }

    /// The users in `dir`, which every process that opens it shares.
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir: Some(dir.into()), ..Self::default() }
    }

    /// The file of user `id`, unless the id could name another file.
    fn file(dir: &FsPath, id: &str) -> Option<PathBuf> {
        let plain =
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        plain.then(|| dir.join(format!("{id}.json")))
    }

    fn put(&self, user: &TestUser) {
        let Some(dir) = &self.dir else {
            self.users.write().unwrap().insert(user.id.clone(), user.clone());
            return;
        };
        let file = Self::file(dir, &user.id).expect("a plain user id");
        // Written whole, then renamed: another process never reads half a user.
        let partial = dir.join(format!("{}.partial", SessionId::random().expose()));
        std::fs::write(&partial, serde_json::to_vec(user).unwrap()).unwrap();
        std::fs::rename(&partial, file).unwrap();
    }

    /// Reads a user without counting it as a load.
    pub fn get(&self, id: &str) -> Option<TestUser> {
        let Some(dir) = &self.dir else {
            return self.users.read().unwrap().get(id).cloned();
        };
        match std::fs::read(Self::file(dir, id)?) {
            Ok(json) => Some(serde_json::from_slice(&json).unwrap()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => panic!("reading user {id}: {error}"),
        }
    }

    pub fn set_password(&self, id: &str, password: &str) -> Option<TestUser> {
        // Not atomic: no test changes one user's password from two places.
        let mut user = self.get(id)?;
        user.password = password.to_owned();
        self.put(&user);
        Some(user)
    }

    pub fn remove(&self, id: &str) {
        match &self.dir {
            Some(dir) => {
                if let Some(file) = Self::file(dir, id) {
                    let _ = std::fs::remove_file(file);
                }
            }
            None => {
                self.users.write().unwrap().remove(id);
            }
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl UserLoader<TestUser> for TestUsers {
    type Error = std::io::Error;

    async fn load(&self, id: &String) -> Result<Option<TestUser>, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Give concurrent lookups a chance to interleave.
        tokio::task::yield_now().await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("user database is down"));
        }
        Ok(self.get(id))
    }
}

/// A second user type whose id is a number: a session logged in as a
/// `TestUser` (string id) holds an id of the wrong shape for it.
#[derive(Debug, Clone)]
pub struct NumericUser {
    pub id: u64,
}

impl AuthUser for NumericUser {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        b"numeric"
    }
}

#[derive(Debug, Clone, Default)]
pub struct NumericUsers {
    pub calls: Arc<AtomicUsize>,
}

impl UserLoader<NumericUser> for NumericUsers {
    type Error = Infallible;

    async fn load(&self, id: &u64) -> Result<Option<NumericUser>, Infallible> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Some(NumericUser { id: *id }))
    }
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    clear: Option<bool>,
    remember: Option<bool>,
    next: Option<String>,
}

#[derive(serde::Deserialize)]
struct PasswordQuery {
    pw: String,
    relogin: Option<bool>,
    end_others: Option<bool>,
}

#[derive(serde::Deserialize)]
struct Value {
    v: String,
}

pub const REMEMBER_SECONDS: u64 = 30 * 24 * 3600;

/// The test app. Login takes the user id in the path: these tests are about
/// sessions, not passwords.
pub fn app(layer: SessionLayer, users: TestUsers, numeric: NumericUsers) -> Router {
    let login_users = users.clone();
    let password_users = users.clone();

    // Login required; 401.
    let protected = Router::new()
        .route(
            "/protected",
            get(
                |user: CurrentUser<TestUser>| async move { format!("protected for {}", user.name) },
            )
            .options(|| async { "preflight" }),
        )
        .route_layer(login_required::<TestUser>());

    // Login required; redirect to the login page.
    let redirected = Router::new()
        .route("/protected-redirect", get(|| async { "protected" }))
        .nest(
            "/area",
            Router::new()
                .route("/page", get(|| async { "nested page" }))
                .route_layer(login_required::<TestUser>().redirect_to("/login")),
        )
        .route_layer(login_required::<TestUser>().redirect_to("/login"));

    // Admins only: a sync and an async predicate, each behind the login guard.
    let admin = Router::new()
        .route(
            "/admin",
            get(
                |user: CurrentUser<TestUser>,
                 again: Option<CurrentUser<TestUser>>,
                 auth: Auth<TestUser>| async move {
                    let third = auth.user().await?.map(|user| user.name.clone());
                    let names = [Some(user.name.clone()), again.map(|u| u.name.clone()), third];
                    Ok::<_, AuthRejection>(format!("admin {names:?}"))
                },
            )
            .options(|| async { "preflight" }),
        )
        .route("/any", any(|method: Method| async move { format!("any {method}") }))
        .route_layer(permission_required::<TestUser>(|user| user.admin))
        .route("/admin-async", get(|| async { "async admin" }))
        .route_layer(permission_required_async::<TestUser>(|user| async move {
            tokio::task::yield_now().await;
            user.admin
        }))
        .route_layer(login_required::<TestUser>());

    // Form posts behind the CSRF layer: a login, a logout, a plain post.
    let csrf_users = users.clone();
    let csrf = Router::new()
        .route(
            "/csrf/login/{id}",
            post(move |auth: Auth<TestUser>, Path(id): Path<String>| {
                let users = csrf_users.clone();
                async move {
                    let user = users.get(&id).unwrap();
                    auth.login(&user).await?;
                    let token = CsrfToken::from_session(auth.session()).await?;
                    Ok::<_, AuthRejection>(token.as_str().to_owned())
                }
            }),
        )
        .route(
            "/csrf/logout",
            post(|auth: Auth<TestUser>| async move {
                auth.logout().await?;
                Ok::<_, AuthRejection>("logged out")
            }),
        )
        .route(
            "/csrf/post",
            post(|user: Option<CurrentUser<TestUser>>| async move {
                let name = user.map_or_else(|| "anonymous".to_owned(), |user| user.name.clone());
                format!("posted as {name}")
            }),
        )
        .route_layer(CsrfLayer::new());

    Router::new()
        .route("/csrf/token", get(|token: CsrfToken| async move { token.as_str().to_owned() }))
        .merge(csrf)
        .route(
            "/login/{id}",
            get(
                move |auth: Auth<TestUser>,
                      Path(id): Path<String>,
                      Query(query): Query<LoginQuery>| {
                    let users = login_users.clone();
                    async move {
                        let Some(user) = users.get(&id) else {
                            return Ok::<_, AuthRejection>(Redirect::to("/login?failed=1"));
                        };
                        let mut options =
                            LoginOptions::new().clear_data(query.clear.unwrap_or(false));
                        if query.remember.unwrap_or(false) {
                            options = options.remember(SessionExpiry::Persistent {
                                idle_timeout: Duration::from_secs(REMEMBER_SECONDS),
                                absolute_timeout: None,
                            });
                        }
                        auth.login_with(&user, options).await?;
                        Ok(Redirect::to(safe_next(query.next.as_deref().unwrap_or("/"))))
                    }
                },
            ),
        )
        .route(
            "/password/{id}",
            get(
                move |auth: Auth<TestUser>,
                      Path(id): Path<String>,
                      Query(query): Query<PasswordQuery>| {
                    let users = password_users.clone();
                    async move {
                        let user = users.set_password(&id, &query.pw).unwrap();
                        if query.relogin.unwrap_or(false) {
                            auth.login(&user).await?;
                        }
                        if query.end_others.unwrap_or(false) {
                            auth.logout_other_sessions().await?;
                        }
                        Ok::<_, AuthRejection>("password changed")
                    }
                },
            ),
        )
        .route("/me", get(|user: CurrentUser<TestUser>| async move { user.name.clone() }))
        .route(
            "/maybe",
            get(|user: Option<CurrentUser<TestUser>>| async move {
                user.map_or_else(|| "anonymous".to_owned(), |user| user.name.clone())
            }),
        )
        .route(
            "/many",
            get(
                |first: CurrentUser<TestUser>,
                 second: CurrentUser<TestUser>,
                 third: Option<CurrentUser<TestUser>>,
                 auth: Auth<TestUser>| async move {
                    let fourth = auth.user().await?;
                    assert!(third.is_some() && fourth.is_some());
                    Ok::<_, AuthRejection>(format!("{} {}", first.name, second.name))
                },
            ),
        )
        .route(
            "/rejection-status",
            get(|user: Result<CurrentUser<TestUser>, AuthRejection>| async move {
                match user {
                    Ok(user) => format!("ok {}", user.name),
                    Err(rejection) => format!("{} {rejection}", rejection.status().as_u16()),
                }
            }),
        )
        .route(
            "/numeric-me",
            get(|user: CurrentUser<NumericUser>| async move { user.id.to_string() }),
        )
        .route(
            "/numeric-maybe",
            get(|user: Option<CurrentUser<NumericUser>>| async move {
                user.map_or_else(|| "anonymous".to_owned(), |user| user.id.to_string())
            }),
        )
        .route(
            "/logout",
            get(|auth: Auth<TestUser>| async move {
                auth.logout().await?;
                Ok::<_, AuthRejection>("logged out")
            }),
        )
        .route(
            "/logout-everywhere",
            get(|auth: Auth<TestUser>| async move {
                Ok::<_, AuthRejection>(auth.logout_everywhere().await?.to_string())
            }),
        )
        .route(
            "/sessions",
            get(|auth: Auth<TestUser>| async move {
                let mut out = String::new();
                for info in auth.sessions().await? {
                    let marker = if info.current { "current" } else { "other" };
                    writeln!(
                        out,
                        "{marker} {} {} {}",
                        info.created_at.unix_seconds(),
                        info.last_seen.unix_seconds(),
                        info.expires_at.unix_seconds()
                    )
                    .unwrap();
                }
                Ok::<_, AuthRejection>(out)
            }),
        )
        .route(
            "/set",
            get(|session: Session, Query(value): Query<Value>| async move {
                session.insert("v", value.v).await?;
                Ok::<_, SessionError>("set")
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                let v: Option<String> = session.get("v").await?;
                Ok::<_, SessionError>(v.unwrap_or_else(|| "none".into()))
            }),
        )
        .route("/incr", get(handlers::locked_increment))
        .route(
            "/corrupt",
            get(|session: Session, Query(value): Query<Value>| async move {
                // Overwrite one reserved auth key with JSON of the wrong shape.
                let (key, json) = value.v.split_once('=').unwrap();
                let json: serde_json::Value = serde_json::from_str(json).unwrap();
                session.insert(key, json).await?;
                Ok::<_, SessionError>("corrupted")
            }),
        )
        .merge(protected)
        .merge(redirected)
        .merge(admin)
        .layer(AuthLayer::new(users))
        .layer(AuthLayer::<NumericUser>::new(numeric))
        .layer(layer)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The single `Set-Cookie` header of the session cookie, if any.
    pub fn set_cookie(&self) -> Option<String> {
        let all: Vec<_> = self.headers.get_all(header::SET_COOKIE).iter().collect();
        assert!(all.len() <= 1, "at most one Set-Cookie, got {all:?}");
        all.first().map(|value| value.to_str().unwrap().to_owned())
    }

    /// `name=value` to send back, from the session cookie that was set.
    pub fn cookie(&self) -> String {
        let set = self.set_cookie().expect("a session cookie was set");
        set.split(';').next().unwrap().to_owned()
    }

    pub fn location(&self) -> &str {
        self.headers.get(header::LOCATION).expect("a Location header").to_str().unwrap()
    }

    /// Whether the response tells the browser to drop the session cookie.
    pub fn clears_cookie(&self) -> bool {
        self.set_cookie().is_some_and(|set| set.contains("Max-Age=0"))
    }
}

pub async fn request(app: &Router, method: Method, path: &str, cookies: &[&str]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for cookie in cookies {
        request = request.header(header::COOKIE, *cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

pub async fn send(app: &Router, path: &str, cookies: &[&str]) -> Reply {
    request(app, Method::GET, path, cookies).await
}

/// Posts the URL-encoded `form` to `path`.
pub async fn post_form(app: &Router, path: &str, cookies: &[&str], form: &str) -> Reply {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for cookie in cookies {
        request = request.header(header::COOKIE, *cookie);
    }
    let response =
        app.clone().oneshot(request.body(Body::from(form.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

/// Logs `user` in from a fresh client; returns the session cookie.
pub async fn login(app: &Router, user: &TestUser) -> String {
    let reply = send(app, &format!("/login/{}", user.id), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    reply.cookie()
}

/// Percent-encodes every byte but unreserved characters, for query values.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

pub fn config() -> SessionConfig {
    SessionConfig::default()
}

/// The app on `store`, with its user databases.
pub struct Fixture<S> {
    pub app: Router,
    pub store: S,
    pub users: TestUsers,
    pub numeric: NumericUsers,
}

pub fn fixture<S: LockingStore + Clone>(store: S, config: SessionConfig) -> Fixture<S> {
    let users = TestUsers::default();
    let numeric = NumericUsers::default();
    let layer =
        SessionLayer::new(store.clone()).with_config(config).expect("a valid session config");
    let app = app(layer, users.clone(), numeric.clone());
    Fixture { app, store, users, numeric }
}

/// A session store that is down: every call fails as a backend error.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownStore;

impl DownStore {
    fn down<T>() -> Result<T, Error> {
        Err(Error::backend("down", std::io::Error::other("connection refused")))
    }
}

#[async_trait]
impl SessionStore for DownStore {
    async fn create(&self, _: &Record) -> Result<(), Error> {
        Self::down()
    }
    async fn load(&self, _: &StorageKey, _: Timestamp) -> Result<Option<Record>, Error> {
        Self::down()
    }
    async fn save(&self, _: &Record) -> Result<(), Error> {
        Self::down()
    }
    async fn delete(&self, _: &StorageKey) -> Result<(), Error> {
        Self::down()
    }
    async fn touch(&self, _: &Record) -> Result<(), Error> {
        Self::down()
    }
    async fn delete_expired(&self, _: Timestamp) -> Result<u64, Error> {
        Self::down()
    }
    async fn list_for_user(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, Error> {
        Self::down()
    }
    async fn delete_for_user(&self, _: &str) -> Result<u64, Error> {
        Self::down()
    }
}

#[async_trait]
impl LockingStore for DownStore {
    async fn lock(&self, _: &StorageKey, _: LockOptions) -> Result<LockGuard, Error> {
        Self::down()
    }
}

/// A well-formed session cookie for a session no store knows: enough to make
/// the session layer ask its store.
pub fn unknown_session_cookie() -> String {
    format!("id={}", SessionId::random().expose())
}

/// A custom error responder: 418 with the error in the body, so a test can
/// tell it answered (and what it was given).
pub fn teapot(error: &Error) -> Response {
    (StatusCode::IM_A_TEAPOT, format!("teapot: {error}")).into_response()
}

/// Error-level log events of the current thread, while the guard lives.
pub struct ErrorLog {
    events: Arc<Mutex<Vec<String>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl ErrorLog {
    /// Starts recording (the tests run on a current-thread runtime, so
    /// everything the request logs happens on this thread).
    pub fn start() -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let guard = tracing::subscriber::set_default(Capture { events: Arc::clone(&events) });
        Self { events, _guard: guard }
    }

    /// The messages recorded since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

/// A minimal subscriber: keeps the message of each error-level event.
struct Capture {
    events: Arc<Mutex<Vec<String>>>,
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            write!(self.0, "{value:?}").unwrap();
        }
    }
}

impl tracing::Subscriber for Capture {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Other tests' threads have no subscriber: ask per event, never cache.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::ERROR
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.events.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Expands to one test per auth scenario on the store built by `$make_store`
/// (an `async fn() -> impl LockingStore + Clone`).
#[macro_export]
macro_rules! auth_tests {
    ($make_store:path) => {
        mod auth_tests {
            use std::sync::atomic::Ordering;
            use std::time::Duration;

            use http::Method;
            use session_axum::core::SessionStore;
            use session_axum::core::{Clock, ExpiryPolicy, ManualClock, Timestamp};

            use super::*;
            use $crate::auth_common::{
                Fixture, REMEMBER_SECONDS, config, encode, fixture, login, request, send,
            };

            async fn setup() -> Fixture<impl session_axum::core::LockingStore + Clone> {
                fixture($make_store().await, config())
            }

            #[tokio::test]
            async fn login_rotates_the_csrf_token_and_logout_ends_it() {
                use $crate::auth_common::post_form;

                let f = setup().await;
                let alice = f.users.add("alice", false);
                let refused = |reply: $crate::auth_common::Reply, what: &str| {
                    assert_eq!(reply.status, 403, "{what}: {}", reply.body);
                    // No new session; a dead one's cookie is dropped.
                    assert!(reply.set_cookie().is_none() || reply.clears_cookie(), "{what}");
                };

                // The login page's token, in an anonymous session.
                let reply = send(&f.app, "/csrf/token", &[]).await;
                let (before, anonymous) = (reply.body.clone(), reply.cookie());
                assert_eq!(send(&f.app, "/maybe", &[&anonymous]).await.body, "anonymous");

                // Login CSRF: a login post without the token logs nobody in.
                let login = format!("/csrf/login/{}", alice.id);
                refused(post_form(&f.app, &login, &[&anonymous], "").await, "login without token");
                assert_eq!(send(&f.app, "/maybe", &[&anonymous]).await.body, "anonymous");

                // With it: logged in, on a new id, with a new token.
                let reply =
                    post_form(&f.app, &login, &[&anonymous], &format!("csrf_token={before}")).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                let (after, cookie) = (reply.body.clone(), reply.cookie());
                assert_ne!(after, before, "the token rotates at login");
                assert_ne!(cookie, anonymous);
                assert_eq!(
                    send(&f.app, "/csrf/token", &[&cookie]).await.body,
                    after,
                    "the token the login handler got is the session's"
                );

                // The pre-login token is refused, with either cookie.
                let old = format!("csrf_token={before}");
                refused(post_form(&f.app, "/csrf/post", &[&cookie], &old).await, "pre-login token");
                refused(
                    post_form(&f.app, "/csrf/post", &[&anonymous], &old).await,
                    "pre-login session",
                );
                let new = format!("csrf_token={after}");
                let reply = post_form(&f.app, "/csrf/post", &[&cookie], &new).await;
                assert_eq!(reply.body, "posted as alice");

                // Any login rotates it: here a second one, by a handler
                // without the CSRF layer.
                let reply = send(&f.app, &format!("/login/{}", alice.id), &[&cookie]).await;
                let relogged = reply.cookie();
                refused(post_form(&f.app, "/csrf/post", &[&relogged], &new).await, "after relogin");
                let newest = send(&f.app, "/csrf/token", &[&relogged]).await.body;
                assert_ne!(newest, after);
                let newest = format!("csrf_token={newest}");
                let reply = post_form(&f.app, "/csrf/post", &[&relogged], &newest).await;
                assert_eq!(reply.body, "posted as alice");

                // Logout ends the session, and its token with it.
                let reply = post_form(&f.app, "/csrf/logout", &[&relogged], &newest).await;
                assert_eq!(reply.body, "logged out");
                assert!(reply.clears_cookie());
                refused(
                    post_form(&f.app, "/csrf/post", &[&relogged], &newest).await,
                    "after logout",
                );
                refused(
                    post_form(&f.app, "/csrf/post", &[], &newest).await,
                    "after logout, no cookie",
                );
                refused(
                    post_form(&f.app, "/csrf/logout", &[&relogged], &newest).await,
                    "logout again",
                );
            }

            #[tokio::test]
            async fn anonymous_requests_are_turned_away_and_write_nothing() {
                let f = setup().await;
                let reply = send(&f.app, "/me", &[]).await;
                assert_eq!(
                    (reply.status.as_u16(), reply.body.as_str()),
                    (401, "Login required.\n")
                );
                assert_eq!(send(&f.app, "/maybe", &[]).await.body, "anonymous");
                assert_eq!(send(&f.app, "/protected", &[]).await.status, 401);
                assert_eq!(send(&f.app, "/admin", &[]).await.status, 401);
                let reply = send(&f.app, "/protected-redirect", &[]).await;
                assert_eq!(reply.status, 303);
                for path in ["/me", "/maybe", "/protected", "/protected-redirect", "/sessions"] {
                    assert_eq!(send(&f.app, path, &[]).await.set_cookie(), None, "{path}");
                }
                assert_eq!(send(&f.app, "/sessions", &[]).await.body, "");
                assert_eq!(f.users.calls(), 0, "no session, no user lookup");
            }

            #[tokio::test]
            async fn login_rotates_the_id_and_the_old_cookie_stops_working() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let anonymous = send(&f.app, "/set?v=cart", &[]).await.cookie();
                let reply = send(&f.app, &format!("/login/{}", alice.id), &[&anonymous]).await;
                assert_eq!(reply.status, 303);
                let logged_in = reply.cookie();
                assert_ne!(logged_in, anonymous, "login issues a new session id");
                assert_eq!(send(&f.app, "/me", &[&logged_in]).await.body, "alice");
                assert_eq!(send(&f.app, "/get", &[&logged_in]).await.body, "cart", "data kept");

                assert_eq!(send(&f.app, "/me", &[&anonymous]).await.status, 401);
                assert_eq!(
                    send(&f.app, "/get", &[&anonymous]).await.body,
                    "none",
                    "old id is dead"
                );

                // Logging in again (same user) rotates again.
                let again =
                    send(&f.app, &format!("/login/{}", alice.id), &[&logged_in]).await.cookie();
                assert_ne!(again, logged_in);
                assert_eq!(send(&f.app, "/me", &[&logged_in]).await.status, 401);
                assert_eq!(send(&f.app, "/me", &[&again]).await.body, "alice");
            }

            #[tokio::test]
            async fn another_users_data_never_carries_over() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let bob = f.users.add("bob", false);
                let cookie = login(&f.app, &alice).await;
                send(&f.app, "/set?v=alice-secret", &[&cookie]).await;
                let reply = send(&f.app, &format!("/login/{}", bob.id), &[&cookie]).await;
                let cookie = reply.cookie();
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.body, "bob");
                assert_eq!(send(&f.app, "/get", &[&cookie]).await.body, "none");
                assert_eq!(
                    f.store.list_for_user(&alice.id, Timestamp::now()).await.unwrap().len(),
                    0,
                    "the session left alice's index"
                );

                // And on request, even the same user's login starts empty.
                send(&f.app, "/set?v=kept-unless-cleared", &[&cookie]).await;
                let cookie = send(&f.app, &format!("/login/{}?clear=true", bob.id), &[&cookie])
                    .await
                    .cookie();
                assert_eq!(send(&f.app, "/get", &[&cookie]).await.body, "none");
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.body, "bob");
            }

            #[tokio::test]
            async fn logout_ends_the_session_server_side() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let cookie = login(&f.app, &alice).await;
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.status, 200);
                let reply = send(&f.app, "/logout", &[&cookie]).await;
                assert_eq!(reply.body, "logged out");
                assert!(reply.clears_cookie(), "{:?}", reply.set_cookie());

                // A client that kept the old cookie gets nothing from it.
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.status, 401);
                assert_eq!(send(&f.app, "/protected", &[&cookie]).await.status, 401);
                assert_eq!(send(&f.app, "/maybe", &[&cookie]).await.body, "anonymous");
                assert!(
                    f.store.list_for_user(&alice.id, Timestamp::now()).await.unwrap().is_empty()
                );
            }

            #[tokio::test]
            async fn a_password_change_ends_the_other_sessions() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let laptop = login(&f.app, &alice).await;
                let phone = login(&f.app, &alice).await;
                let tablet = login(&f.app, &alice).await;
                assert_eq!(send(&f.app, "/me", &[&phone]).await.body, "alice");

                // The laptop changes the password and stays logged in.
                let reply = send(
                    &f.app,
                    &format!("/password/{}?pw=second&relogin=true", alice.id),
                    &[&laptop],
                )
                .await;
                assert_eq!(reply.body, "password changed");
                let laptop = reply.cookie();
                assert_eq!(send(&f.app, "/me", &[&laptop]).await.body, "alice");

                // Every other session is over, and deleted on its next request.
                let reply = send(&f.app, "/me", &[&phone]).await;
                assert_eq!(reply.status, 401);
                assert!(reply.clears_cookie(), "the stale session's cookie is dropped");
                assert_eq!(send(&f.app, "/get", &[&phone]).await.body, "none");
                assert_eq!(send(&f.app, "/protected", &[&tablet]).await.status, 401);
                let left = f.store.list_for_user(&alice.id, Timestamp::now()).await.unwrap();
                assert_eq!(left.len(), 1, "only the laptop's session is left");

                // Without a new login, the changing session ends too.
                f.users.set_password(&alice.id, "third");
                assert_eq!(send(&f.app, "/me", &[&laptop]).await.status, 401);
            }

            #[tokio::test]
            async fn logout_other_sessions_deletes_them_and_their_data_at_once() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let bob = f.users.add("bob", false);
                let laptop = login(&f.app, &alice).await;
                let phone = login(&f.app, &alice).await;
                let bobs = login(&f.app, &bob).await;
                assert_eq!(send(&f.app, "/set?v=cart", &[&phone]).await.status, 200);

                let path = format!("/password/{}?pw=second&relogin=true&end_others=true", alice.id);
                let reply = send(&f.app, &path, &[&laptop]).await;
                assert_eq!(reply.body, "password changed");
                let laptop = reply.cookie();

                // Gone before anything authenticates it again: data included.
                assert_eq!(send(&f.app, "/get", &[&phone]).await.body, "none");
                let left = f.store.list_for_user(&alice.id, Timestamp::now()).await.unwrap();
                assert_eq!(left.len(), 1, "only the laptop's session is left");
                assert_eq!(send(&f.app, "/me", &[&laptop]).await.body, "alice");
                assert_eq!(
                    send(&f.app, "/me", &[&bobs]).await.body,
                    "bob",
                    "other users keep theirs"
                );
            }

            #[tokio::test]
            async fn logout_everywhere_ends_every_session_of_the_user() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let bob = f.users.add("bob", false);
                let alices = [
                    login(&f.app, &alice).await,
                    login(&f.app, &alice).await,
                    login(&f.app, &alice).await,
                ];
                let bobs = login(&f.app, &bob).await;

                let reply = send(&f.app, "/logout-everywhere", &[&alices[1]]).await;
                assert_eq!(reply.body, "3");
                assert!(reply.clears_cookie());
                for cookie in &alices {
                    assert_eq!(send(&f.app, "/me", &[cookie]).await.status, 401);
                }
                assert!(
                    f.store.list_for_user(&alice.id, Timestamp::now()).await.unwrap().is_empty()
                );
                assert_eq!(
                    send(&f.app, "/me", &[&bobs]).await.body,
                    "bob",
                    "other users unaffected"
                );

                // Anonymous: nothing to end.
                assert_eq!(send(&f.app, "/logout-everywhere", &[]).await.body, "0");
            }

            #[tokio::test]
            async fn sessions_lists_the_users_sessions_and_marks_this_one() {
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(3600))
                    .with_absolute_timeout(None)
                    .with_touch_interval(Duration::from_secs(60));
                let f = fixture(
                    $make_store().await,
                    config().with_clock(clock.clone()).with_expiry(policy),
                );
                let alice = f.users.add("alice", false);
                let bob = f.users.add("bob", false);
                let start = clock.now().unix_seconds();
                let first = login(&f.app, &alice).await;
                clock.advance(Duration::from_secs(100));
                let second = login(&f.app, &alice).await;
                login(&f.app, &bob).await;
                clock.advance(Duration::from_secs(100));
                // Activity on the first session moves its last-seen time.
                assert_eq!(send(&f.app, "/me", &[&first]).await.body, "alice");

                let listed = send(&f.app, "/sessions", &[&second]).await.body;
                let lines: Vec<&str> = listed.lines().collect();
                assert_eq!(lines.len(), 2, "{listed}");
                let expect_second = format!("current {0} {0} {1}", start + 100, start + 100 + 3600);
                let expect_first =
                    format!("other {start} {0} {1}", start + 200, start + 200 + 3600);
                assert_eq!(lines, [expect_second.as_str(), expect_first.as_str()]);
            }

            #[tokio::test]
            async fn the_redirect_keeps_next_and_login_returns_there() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let reply = send(&f.app, "/protected-redirect?a=1&b=x%20y", &[]).await;
                assert_eq!(reply.status, 303);
                let location = reply.location().to_owned();
                assert_eq!(location, "/login?next=/protected-redirect%3Fa%3D1%26b%3Dx%2520y");
                assert_eq!(reply.set_cookie(), None);

                // Nested routers keep their prefix in `next`.
                let reply = send(&f.app, "/area/page?x=1", &[]).await;
                assert_eq!(reply.location(), "/login?next=/area/page%3Fx%3D1");

                // The login handler sends the user back where they were going.
                let next = location.strip_prefix("/login?next=").unwrap();
                let reply = send(&f.app, &format!("/login/{}?next={next}", alice.id), &[]).await;
                assert_eq!(reply.location(), "/protected-redirect?a=1&b=x%20y");
                let cookie = reply.cookie();
                let reply = send(&f.app, reply.location(), &[&cookie]).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "protected"));
                assert_eq!(send(&f.app, "/area/page?x=1", &[&cookie]).await.body, "nested page");
            }

            #[tokio::test]
            async fn open_redirect_attempts_fall_back_to_the_root() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                for hostile in [
                    "https://evil.example/",
                    "http://evil.example",
                    "//evil.example",
                    "///evil.example",
                    "/\\evil.example",
                    "\\\\evil.example",
                    "%2F%2Fevil.example",
                    "/%2F%2Fevil.example",
                    "/%5Cevil.example",
                    "/%252F%252Fevil.example",
                    "/\t/evil.example",
                    "/%09/evil.example",
                    "/\r\n/evil.example",
                    "javascript:alert(1)",
                    " /evil",
                    "evil.example",
                ] {
                    let path = format!("/login/{}?next={}", alice.id, encode(hostile));
                    let reply = send(&f.app, &path, &[]).await;
                    assert_eq!(reply.status, 303, "{hostile:?}");
                    assert_eq!(reply.location(), "/", "{hostile:?}");
                }
            }

            #[tokio::test]
            async fn the_permission_layer_gives_403() {
                let f = setup().await;
                let admin = f.users.add("root", true);
                let user = f.users.add("bob", false);
                let admin = login(&f.app, &admin).await;
                let user = login(&f.app, &user).await;
                for path in ["/admin", "/admin-async"] {
                    let reply = send(&f.app, path, &[&user]).await;
                    assert_eq!(
                        (reply.status.as_u16(), reply.body.as_str()),
                        (403, "Forbidden.\n"),
                        "{path}"
                    );
                    assert_eq!(send(&f.app, path, &[]).await.status, 401, "{path}");
                    assert_eq!(send(&f.app, path, &[&admin]).await.status, 200, "{path}");
                }
                assert_eq!(send(&f.app, "/admin-async", &[&admin]).await.body, "async admin");
            }

            #[tokio::test]
            async fn a_stored_user_of_the_wrong_shape_is_401_not_500() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let cookie = login(&f.app, &alice).await;
                // Logged in as a TestUser, whose id is a string: not a NumericUser's id.
                let reply = send(&f.app, "/numeric-me", &[&cookie]).await;
                assert_eq!(reply.status, 401, "{}", reply.body);
                assert_eq!(send(&f.app, "/numeric-maybe", &[&cookie]).await.body, "anonymous");
                assert_eq!(f.numeric.calls.load(Ordering::SeqCst), 0);
                assert_eq!(
                    send(&f.app, "/me", &[&cookie]).await.body,
                    "alice",
                    "session untouched"
                );

                for corrupt in [
                    r#"_auth_hash=42"#,
                    r#"_auth_hash="not hex""#,
                    r#"_auth_hash=null"#,
                    r#"_auth_user_id={"nested":[1,2]}"#,
                    r#"_auth_user_id=17"#,
                ] {
                    let cookie = login(&f.app, &alice).await;
                    let path = format!("/corrupt?v={}", encode(corrupt));
                    assert_eq!(send(&f.app, &path, &[&cookie]).await.status, 200);
                    for path in ["/me", "/protected", "/admin"] {
                        let reply = send(&f.app, path, &[&cookie]).await;
                        assert_eq!(reply.status, 401, "{corrupt} {path}: {}", reply.body);
                    }
                    assert_eq!(send(&f.app, "/maybe", &[&cookie]).await.body, "anonymous");
                }
            }

            #[tokio::test]
            async fn the_loader_is_called_once_per_request() {
                let f = setup().await;
                let root = f.users.add("root", true);
                let cookie = login(&f.app, &root).await;
                assert_eq!(f.users.calls(), 0, "login itself loads nobody");

                let reply = send(&f.app, "/many", &[&cookie]).await;
                assert_eq!(reply.body, "root root");
                assert_eq!(f.users.calls(), 1, "two CurrentUser, an Option and Auth::user");

                // Login guard, permission guard, and three lookups in the handler.
                let reply = send(&f.app, "/admin", &[&cookie]).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                assert!(
                    reply.body.contains(r#"[Some("root"), Some("root"), Some("root")]"#),
                    "{}",
                    reply.body
                );
                assert_eq!(f.users.calls(), 2);

                // Concurrent requests each load once.
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let app = f.app.clone();
                    let cookie = cookie.clone();
                    tasks.push(tokio::spawn(async move {
                        send(&app, "/many", &[&cookie]).await.status
                    }));
                }
                for task in tasks {
                    assert_eq!(task.await.unwrap(), 200);
                }
                assert_eq!(f.users.calls(), 10);
            }

            #[tokio::test]
            async fn unknown_routes_are_404_not_401() {
                let f = setup().await;
                for path in ["/nope", "/protected/extra", "/admin/extra", "/area/nope"] {
                    let reply = send(&f.app, path, &[]).await;
                    assert_eq!(reply.status, 404, "{path}");
                }
                assert_eq!(f.users.calls(), 0);
            }

            #[tokio::test]
            async fn options_requests_are_guarded_like_any_other() {
                let f = setup().await;
                for path in ["/protected", "/admin", "/any"] {
                    let reply = request(&f.app, Method::OPTIONS, path, &[]).await;
                    assert_eq!(reply.status, 401, "anonymous OPTIONS {path}");
                }
                let alice = f.users.add("alice", false);
                let cookie = login(&f.app, &alice).await;
                let reply = request(&f.app, Method::OPTIONS, "/protected", &[&cookie]).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "preflight"));
                let reply = request(&f.app, Method::OPTIONS, "/admin", &[&cookie]).await;
                assert_eq!(reply.status, 403, "OPTIONS without the permission");
                for method in [Method::OPTIONS, Method::GET, Method::DELETE] {
                    let reply = request(&f.app, method.clone(), "/any", &[&cookie]).await;
                    assert_eq!(reply.status, 403, "{method} /any without the permission");
                }
                let admin = f.users.add("root", true);
                let cookie = login(&f.app, &admin).await;
                let reply = request(&f.app, Method::OPTIONS, "/admin", &[&cookie]).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "preflight"));
                let reply = request(&f.app, Method::OPTIONS, "/any", &[&cookie]).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "any OPTIONS"));
            }

            #[tokio::test]
            async fn a_failing_loader_gives_503_and_keeps_the_session() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let cookie = login(&f.app, &alice).await;
                f.users.fail(true);
                for path in ["/me", "/protected", "/admin", "/sessions", "/logout-everywhere"] {
                    let reply = send(&f.app, path, &[&cookie]).await;
                    assert_eq!(reply.status, 503, "{path}");
                    assert_eq!(reply.set_cookie(), None, "{path}");
                }
                // A failure is not an anonymous visitor, for the Option too.
                let reply = send(&f.app, "/maybe", &[&cookie]).await;
                assert_eq!(reply.status, 503, "{}", reply.body);
                f.users.fail(false);
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.body, "alice");
            }

            #[tokio::test]
            async fn a_deleted_user_is_anonymous() {
                let f = setup().await;
                let alice = f.users.add("alice", false);
                let cookie = login(&f.app, &alice).await;
                f.users.remove(&alice.id);
                assert_eq!(send(&f.app, "/me", &[&cookie]).await.status, 401);
                assert_eq!(send(&f.app, "/maybe", &[&cookie]).await.body, "anonymous");
            }

            #[tokio::test]
            async fn remember_me_gives_a_persistent_cookie() {
                // A manual clock: Max-Age must not depend on a second boundary.
                let clock = ManualClock::starting_now();
                let f = fixture($make_store().await, config().with_clock(clock));
                let alice = f.users.add("alice", false);
                let reply = send(&f.app, &format!("/login/{}?remember=true", alice.id), &[]).await;
                let set = reply.set_cookie().unwrap();
                assert!(set.contains(&format!("Max-Age={REMEMBER_SECONDS}")), "{set}");
                assert_eq!(send(&f.app, "/me", &[&reply.cookie()]).await.body, "alice");
            }
        }
    };
}
