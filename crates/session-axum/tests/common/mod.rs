//! Shared HTTP tests: `route_tests!(make_store)` runs every scenario through
//! the real `SessionLayer` on one store. Each store's test file invokes it.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router, http::StatusCode};
use http::{HeaderMap, Method, Request, header};
use http_body_util::BodyExt;
use session_axum::config::{DefaultErrorResponder, ErrorResponder};
use session_axum::core::SessionExpiry;
use session_axum::core::{
    Error, LockGuard, LockOptions, LockingStore, Record, SessionStore, StorageKey, Timestamp,
    async_trait,
};
use session_axum::csrf::{CsrfLayer, CsrfRejection, CsrfToken};
use session_axum::flash::{Flash, Level};
use session_axum::{Session, SessionConfig, SessionError, SessionLayer};
use tower::ServiceExt;

pub mod child;
pub mod clock_steps;
pub mod handlers;
pub mod ledger;
pub mod races;
pub mod target;
pub mod wire;

/// Counts writes to the wrapped store and fails every call on demand.
#[derive(Debug, Clone)]
pub struct Probe<S> {
    inner: S,
    pub writes: Arc<AtomicUsize>,
    pub loads: Arc<AtomicUsize>,
    pub failing: Arc<AtomicBool>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, writes: Arc::default(), loads: Arc::default(), failing: Arc::default() }
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), Error> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::backend("probe", std::io::Error::other("store is down")));
        }
        Ok(())
    }

    fn write(&self) -> Result<(), Error> {
        self.check()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Probe<S> {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.write()?;
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, Error> {
        self.check()?;
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key, now).await
    }
    async fn save(&self, record: &Record) -> Result<(), Error> {
        self.write()?;
        self.inner.save(record).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<(), Error> {
        self.write()?;
        self.inner.delete(key).await
    }
    async fn touch(&self, record: &Record) -> Result<(), Error> {
        self.write()?;
        self.inner.touch(record).await
    }
    async fn delete_expired(&self, now: Timestamp) -> Result<u64, Error> {
        self.write()?;
        self.inner.delete_expired(now).await
    }
    async fn list_for_user(&self, user: &str, now: Timestamp) -> Result<Vec<Record>, Error> {
        self.check()?;
        self.inner.list_for_user(user, now).await
    }
    async fn delete_for_user(&self, user: &str) -> Result<u64, Error> {
        self.write()?;
        self.inner.delete_for_user(user).await
    }
}

#[async_trait]
impl<S: LockingStore> LockingStore for Probe<S> {
    async fn lock(&self, key: &StorageKey, options: LockOptions) -> Result<LockGuard, Error> {
        self.check()?;
        self.inner.lock(key, options).await
    }
}

#[derive(serde::Deserialize)]
struct Value {
    v: String,
}

#[derive(serde::Deserialize)]
struct Note {
    level: Level,
    text: String,
}

/// The test app: one route per session operation.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/noop", get(|| async { "noop" }))
        .route(
            "/get",
            get(|session: Session| async move {
                let v: Option<String> = session.get("v").await?;
                Ok::<_, SessionError>(v.unwrap_or_else(|| "none".into()))
            }),
        )
        .route(
            "/set",
            get(|session: Session, Query(value): Query<Value>| async move {
                session.insert("v", value.v).await?;
                Ok::<_, SessionError>("set")
            }),
        )
        .route("/incr", get(handlers::locked_increment))
        .route(
            "/hold",
            get(|session: Session| async move {
                let _locked = session.lock().await?;
                // Holds the lock until the process dies: the crash tests
                // kill it here.
                std::future::pending::<()>().await;
                Ok::<_, SessionError>("unreachable")
            }),
        )
        .route(
            "/read-then-incr",
            get(|session: Session| async move {
                // Read without the lock first (as `CurrentUser` does), then lock.
                let before = session.get::<u64>("n").await?;
                tokio::task::yield_now().await;
                let locked = session.lock().await?;
                let n = locked.get::<u64>("n").await?.unwrap_or(0) + 1;
                assert!(before.unwrap_or(0) < n, "the lock never goes back in time");
                locked.insert("n", n).await?;
                Ok::<_, SessionError>(n.to_string())
            }),
        )
        .route(
            "/fail",
            get(|session: Session| async move {
                session.insert("v", "from a failed request").await?;
                Ok::<_, SessionError>((StatusCode::INTERNAL_SERVER_ERROR, "boom"))
            }),
        )
        .route(
            "/cycle",
            get(|session: Session| async move {
                session.cycle_id().await?;
                Ok::<_, SessionError>("cycled")
            }),
        )
        .route(
            "/destroy",
            get(|session: Session| async move {
                session.destroy().await?;
                Ok::<_, SessionError>("destroyed")
            }),
        )
        .route(
            "/big",
            get(|session: Session| async move {
                session.insert("v", "x".repeat(100 * 1024)).await?;
                Ok::<_, SessionError>("big")
            }),
        )
        .route(
            "/flash/add",
            get(|flash: Flash, Query(note): Query<Note>| async move {
                flash.push(note.level, note.text).await?;
                Ok::<_, SessionError>("added")
            }),
        )
        .route(
            "/flash/take",
            get(|flash: Flash| async move {
                let taken = flash.take::<String>().await?;
                let shown: Vec<String> =
                    taken.iter().map(|m| format!("{}:{}", m.level, m.content)).collect();
                Ok::<_, SessionError>(if shown.is_empty() {
                    "none".into()
                } else {
                    shown.join("|")
                })
            }),
        )
        .route(
            "/flash/take-number",
            get(|flash: Flash| async move {
                let taken = flash.take::<u64>().await?;
                Ok::<_, SessionError>(format!("{}", taken.len()))
            }),
        )
        .merge(csrf_routes())
        .route(
            "/remember",
            get(|session: Session| async move {
                session
                    .set_expiry(SessionExpiry::Persistent {
                        idle_timeout: std::time::Duration::from_secs(30 * 24 * 3600),
                        absolute_timeout: None,
                    })
                    .await?;
                Ok::<_, SessionError>("remembered")
            }),
        )
        .layer(layer)
}

#[derive(serde::Deserialize)]
struct Comment {
    text: String,
}

/// The CSRF routes: pages with a token, and posts behind the layer.
fn csrf_routes() -> Router {
    let checked =
        Router::new()
            .route(
                "/csrf/submit",
                get(|| async { "read" })
                    .post(|Form(comment): Form<Comment>| async move {
                        format!("posted {}", comment.text)
                    })
                    .put(|| async { "put" })
                    .patch(|| async { "patched" })
                    .delete(|| async { "deleted" }),
            )
            .route_layer(CsrfLayer::new());
    let small = Router::new()
        .route(
            "/csrf/small",
            post(|Form(comment): Form<Comment>| async move { format!("posted {}", comment.text) }),
        )
        .route_layer(CsrfLayer::new().with_max_form_bytes(256));
    let trusting = Router::new()
        .route("/csrf/trusting", post(|| async { "trusted" }))
        .route_layer(CsrfLayer::new().with_trusted_origin("https://Admin.Example/"));
    Router::new()
        .route("/csrf/token", get(|token: CsrfToken| async move { token.as_str().to_owned() }))
        .route("/csrf/form", get(|token: CsrfToken| async move { token.hidden_input() }))
        .route(
            "/csrf/token-after-write",
            get(|session: Session| async move {
                // A page that writes the session, then renders a form.
                session.insert("seen", true).await?;
                let token = CsrfToken::from_session(&session).await?;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok::<_, SessionError>(token.as_str().to_owned())
            }),
        )
        .route(
            "/csrf/slow-token",
            get(|token: CsrfToken| async move {
                // Keeps the new token unsaved a while, for concurrent pages.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                token.as_str().to_owned()
            }),
        )
        .merge(checked)
        .merge(small)
        .merge(trusting)
}

#[derive(Debug)]
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
}

pub async fn send(app: &Router, path: &str, cookies: &[&str]) -> Reply {
    let mut request = Request::get(path);
    for cookie in cookies {
        request = request.header(header::COOKIE, *cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

/// A request with any method, headers and body; `cookies` as for [`send`].
pub async fn request(
    app: &Router,
    method: Method,
    path: &str,
    cookies: &[&str],
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for cookie in cookies {
        request = request.header(header::COOKIE, *cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.clone().oneshot(request.body(body.into()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Posts the URL-encoded `form` to `path`.
pub async fn post_form(
    app: &Router,
    path: &str,
    cookies: &[&str],
    headers: &[(&str, &str)],
    form: &str,
) -> Reply {
    let mut all = vec![FORM];
    all.extend_from_slice(headers);
    request(app, Method::POST, path, cookies, &all, form.to_owned()).await
}

pub fn config() -> SessionConfig {
    SessionConfig::default()
}

/// The cookie to send next: the one `reply` set, else `cookie`.
pub fn next_cookie(reply: &Reply, cookie: String) -> String {
    reply.set_cookie().map_or(cookie, |_| reply.cookie())
}

/// The body every CSRF refusal answers by default, whatever the reason.
pub const CSRF_REFUSED: &str = "CSRF check failed: reload the page and try again.\n";

/// A responder with its own CSRF page, telling the tests it answered.
pub struct CsrfPage;

impl ErrorResponder for CsrfPage {
    fn respond(&self, error: &Error) -> Response {
        (StatusCode::IM_A_TEAPOT, format!("teapot: {error}")).into_response()
    }

    fn csrf_rejected(&self, rejection: &CsrfRejection) -> Response {
        (rejection.status(), format!("csrf page: {:?}", rejection.reason())).into_response()
    }
}

/// Only the CSRF page is custom: store failures answer the default way.
pub struct CsrfPageOnly;

impl ErrorResponder for CsrfPageOnly {
    fn respond(&self, error: &Error) -> Response {
        DefaultErrorResponder.respond(error)
    }

    fn csrf_rejected(&self, rejection: &CsrfRejection) -> Response {
        CsrfPage.csrf_rejected(rejection)
    }
}

/// Expands to one test per HTTP scenario on the store built by `$make_store`
/// (an `async fn() -> impl LockingStore + Clone`).
#[macro_export]
macro_rules! route_tests {
    ($make_store:path) => {
        mod route_tests {
            use std::time::Duration;

            use session_axum::SessionLayer;
            use session_axum::core::testing::RepeatingIds;
            use session_axum::core::{ExpiryPolicy, ManualClock, SessionId};

            use super::*;
            use $crate::common::{Probe, app, config, send};

            async fn probe() -> Probe<impl session_axum::core::LockingStore + Clone> {
                Probe::new($make_store().await)
            }

            fn layer<S: session_axum::core::LockingStore + Clone>(
                probe: &Probe<S>,
                config: session_axum::SessionConfig,
            ) -> SessionLayer {
                SessionLayer::new(probe.clone())
                    .with_config(config)
                    .expect("a valid session config")
            }

            #[tokio::test]
            async fn flash_messages_are_read_once_in_order() {
                let store = probe().await;
                $crate::common::flash_scenario(&app(layer(&store, config()))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_flash_messages_are_all_kept_and_shown_once() {
                let store = probe().await;
                $crate::common::concurrent_flash_scenario(&app(layer(&store, config()))).await;
            }

            #[tokio::test]
            async fn csrf_tokens_guard_unsafe_methods() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                $crate::common::csrf_scenario(&app).await;
                $crate::common::csrf_token_dies_with_the_session(&app).await;
            }

            #[tokio::test]
            async fn csrf_refusals_answer_the_configured_responder() {
                let store = probe().await;
                let config = config().with_error_responder($crate::common::CsrfPage);
                $crate::common::csrf_responder_scenario(&app(layer(&store, config))).await;
            }

            #[tokio::test]
            async fn the_csrf_check_writes_nothing_and_a_failing_store_is_no_403() {
                use $crate::common::{CsrfPage, CsrfPageOnly, csrf_form, post_form};

                let store = probe().await;
                let app = app(layer(&store, config()));
                let (token, cookie) = csrf_form(&app).await;
                let form = format!("text=x&csrf_token={token}");
                let writes = store.writes();
                assert_eq!(
                    post_form(&app, "/csrf/submit", &[&cookie], &[], &form).await.body,
                    "posted x"
                );
                assert_eq!(store.writes(), writes, "checking a token writes nothing");

                store.fail(true);
                let reply = post_form(&app, "/csrf/submit", &[&cookie], &[], &form).await;
                assert_eq!(reply.status, 503, "{}", reply.body);
                let custom =
                    $crate::common::app(layer(&store, config().with_error_responder(CsrfPage)));
                let reply = post_form(&custom, "/csrf/submit", &[&cookie], &[], &form).await;
                assert_eq!(
                    (reply.status.as_u16(), reply.body.as_str()),
                    (418, "teapot: probe store: store is down")
                );
                let page_only =
                    $crate::common::app(layer(&store, config().with_error_responder(CsrfPageOnly)));
                let reply = post_form(&page_only, "/csrf/submit", &[&cookie], &[], &form).await;
                assert_eq!(reply.status, 503, "{}", reply.body);
                store.fail(false);
                assert_eq!(
                    post_form(&app, "/csrf/submit", &[&cookie], &[], &form).await.body,
                    "posted x"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_first_forms_of_a_session_share_one_token() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                // Pages that only render a form, and pages that write the
                // session first.
                for page in ["/csrf/slow-token", "/csrf/token-after-write"] {
                    let cookie = send(&app, "/set?v=no+token+yet", &[]).await.cookie();
                    let mut pages = Vec::new();
                    for _ in 0..20 {
                        let app = app.clone();
                        let cookie = cookie.clone();
                        pages.push(tokio::spawn(
                            async move { send(&app, page, &[&cookie]).await.body },
                        ));
                    }
                    let mut tokens = Vec::new();
                    for page in pages {
                        tokens.push(page.await.unwrap());
                    }
                    tokens.dedup();
                    assert_eq!(tokens.len(), 1, "{page}: {tokens:?}");
                    assert_eq!(send(&app, "/csrf/token", &[&cookie]).await.body, tokens[0]);
                }
            }

            #[tokio::test]
            async fn sets_secure_cookie_attributes() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let reply = send(&app, "/set?v=a", &[]).await;
                assert_eq!(reply.status, 200);
                let set = reply.set_cookie().unwrap();
                for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age="] {
                    assert!(set.contains(part), "{set} lacks {part}");
                }
                assert!(!set.contains("Domain"), "{set}");
                let value = reply.cookie();
                let id = value.strip_prefix("id=").unwrap();
                assert!(id.parse::<SessionId>().is_ok(), "cookie carries a well-formed id");
                assert_eq!(reply.headers.get("vary").unwrap(), "Cookie");
                assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
                assert_eq!(send(&app, "/get", &[&value]).await.body, "a");
            }

            #[tokio::test]
            async fn untouched_and_read_only_sessions_send_no_cookie_and_write_nothing() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let reply = send(&app, "/noop", &[]).await;
                assert_eq!(reply.set_cookie(), None);
                assert_eq!(reply.headers.get(http::header::VARY), None, "never looked at");
                let reply = send(&app, "/get", &[]).await;
                assert_eq!((reply.body.as_str(), reply.set_cookie()), ("none", None));
                assert_eq!(reply.headers.get(http::header::VARY).unwrap(), "Cookie");
                assert_eq!(store.writes(), 0);
                assert_eq!(store.loads(), 0, "no cookie, no lookup");

                // A live session's cookie on a route that never uses it: no
                // lookup, no write, no headers.
                let cookie = send(&app, "/set?v=kept", &[]).await.cookie();
                let (loads, writes) = (store.loads(), store.writes());
                let reply = send(&app, "/noop", &[&cookie]).await;
                assert_eq!(reply.set_cookie(), None);
                assert_eq!(reply.headers.get(http::header::VARY), None);
                assert_eq!((store.loads(), store.writes()), (loads, writes));
            }

            #[tokio::test]
            async fn unknown_id_is_not_adopted_and_nothing_is_written() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let unknown = format!("id={}", SessionId::random().expose());
                let reply = send(&app, "/get", &[&unknown]).await;
                assert_eq!(reply.body, "none");
                assert_eq!(store.writes(), 0, "a read-only request writes nothing");
                // The stale cookie is dropped, never re-issued.
                let set = reply.set_cookie().unwrap();
                assert!(set.contains("Max-Age=0"), "{set}");

                let reply = send(&app, "/set?v=x", &[&unknown]).await;
                let fresh = reply.cookie();
                assert_ne!(fresh, unknown, "a write gets a new id, not the unknown one");
                assert_eq!(send(&app, "/get", &[&unknown]).await.body, "none");
                assert_eq!(send(&app, "/get", &[&fresh]).await.body, "x");
            }

            #[tokio::test]
            async fn hostile_cookie_values_are_served_as_no_session() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let victim = send(&app, "/set?v=secret", &[]).await.cookie();
                let id = victim.strip_prefix("id=").unwrap().to_owned();
                let writes_before = store.writes();
                let long = format!("id={}", "A".repeat(4096));
                let huge = format!("id={}", "A".repeat(100 * 1024));
                let mega = format!("id={}", "A".repeat(1024 * 1024));
                let quoted = format!("id=\"{id}\"");
                let short = format!("id={}", &id[..21]);
                let longer = format!("id={id}A");
                let spaced = format!("id={} {}", &id[..10], &id[11..]);
                let hostile: Vec<&str> = vec![
                    // Row 1: not base64, empty, name only.
                    "id=!!!",
                    "id=",
                    "id",
                    // Row 2: control and non-ASCII characters, quotes, bad escapes.
                    "id=AAAAAAAAAAA%00AAAAAAAAAA",
                    "id=%ZZ",
                    &quoted,
                    // Row 4: oversized.
                    &long,
                    &huge,
                    &mega,
                    // Row 6: too short, too long, wrong alphabet, whitespace.
                    &short,
                    &longer,
                    "id=AAAAAAAAAAAAAAAAAAAA+/",
                    &spaced,
                    // Row 7: path-like.
                    "id=../../etc/passwd",
                    "id=..%2f..%2f..%2f",
                    "id=a\\b",
                    "id=/etc/passwd",
                    "id=NUL",
                    "id=CON",
                    // Row 8: SQL-shaped.
                    "id=' OR 1=1--",
                ];
                for cookie in hostile {
                    let reply = send(&app, "/get", &[cookie]).await;
                    assert_eq!(reply.status, 200, "{cookie:.40}");
                    assert_eq!(reply.body, "none", "{cookie:.40}");
                    // Cleared like an unknown id; `id` alone is no cookie of that name.
                    match reply.set_cookie() {
                        Some(set) => assert!(
                            cookie != "id" && set.starts_with("id=;") && set.contains("Max-Age=0"),
                            "{cookie:.40}: {set}"
                        ),
                        None => assert_eq!(cookie, "id", "{cookie:.40} is not cleared"),
                    }
                }
                // Row 2: bytes that cannot be a header value at all never reach us;
                // non-ASCII that can is ignored like any malformed value.
                let request = http::Request::get("/get")
                    .header(
                        http::header::COOKIE,
                        http::HeaderValue::from_bytes(b"id=\xc3\xa9t\xc3\xa9").unwrap(),
                    )
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = tower::ServiceExt::oneshot(app.clone(), request).await.unwrap();
                assert_eq!(response.status(), 200);
                // Row 3: several Cookie headers; the valid one is found, junk around it ignored.
                let reply = send(&app, "/get", &["id=!!!", "other=1", &victim]).await;
                assert_eq!(reply.body, "secret");
                assert_eq!(store.writes(), writes_before, "no hostile request wrote anything");
                assert_eq!(
                    send(&app, "/get", &[&victim]).await.body,
                    "secret",
                    "the real session is intact"
                );
            }

            #[tokio::test]
            async fn server_errors_save_nothing() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let reply = send(&app, "/fail", &[]).await;
                assert_eq!(reply.status, 500);
                assert_eq!(reply.set_cookie(), None);
                assert_eq!(store.writes(), 0);

                let cookie = send(&app, "/set?v=kept", &[]).await.cookie();
                let writes = store.writes();
                let reply = send(&app, "/fail", &[&cookie]).await;
                assert_eq!((reply.status.as_u16(), reply.set_cookie()), (500, None));
                assert_eq!(store.writes(), writes);
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "kept");
            }

            #[tokio::test]
            async fn cycle_id_moves_the_data_and_deletes_the_old_record() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let old = send(&app, "/set?v=carried", &[]).await.cookie();
                let new = send(&app, "/cycle", &[&old]).await.cookie();
                assert_ne!(old, new);
                assert_eq!(send(&app, "/get", &[&new]).await.body, "carried");
                assert_eq!(send(&app, "/get", &[&old]).await.body, "none", "old id is dead");
            }

            #[tokio::test]
            async fn destroy_deletes_and_clears_the_cookie() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let cookie = send(&app, "/set?v=gone", &[]).await.cookie();
                let reply = send(&app, "/destroy", &[&cookie]).await;
                let set = reply.set_cookie().unwrap();
                assert!(set.starts_with("id=;") && set.contains("Max-Age=0"), "{set}");
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "none");
                // Replaying the old cookie in a write starts a fresh session.
                let fresh = send(&app, "/set?v=new", &[&cookie]).await.cookie();
                assert_ne!(fresh, cookie);
            }

            #[tokio::test]
            async fn requests_at_the_deadline() {
                $crate::common::clock_steps::requests_at_the_deadline(probe().await).await;
            }

            #[tokio::test]
            async fn a_stepped_wall_clock_neither_resurrects_nor_ends_every_session() {
                $crate::common::clock_steps::a_stepped_wall_clock(probe().await).await;
            }

            #[tokio::test]
            async fn idle_expiry_with_a_manual_clock() {
                let store = probe().await;
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(600))
                    .with_absolute_timeout(None)
                    .with_touch_interval(Duration::from_secs(60));
                let app =
                    app(layer(&store, config().with_clock(clock.clone()).with_expiry(policy)));
                let cookie = send(&app, "/set?v=idle", &[]).await.cookie();

                // Reads within the touch interval write nothing.
                let writes = store.writes();
                clock.advance(Duration::from_secs(30));
                let reply = send(&app, "/get", &[&cookie]).await;
                assert_eq!((reply.body.as_str(), reply.set_cookie()), ("idle", None));
                assert_eq!(store.writes(), writes);

                // Activity after the touch interval slides the deadline.
                clock.advance(Duration::from_secs(500));
                let reply = send(&app, "/get", &[&cookie]).await;
                assert_eq!(reply.body, "idle");
                assert!(reply.set_cookie().unwrap().contains("Max-Age=600"));
                assert_eq!(store.writes(), writes + 1, "one touch");
                clock.advance(Duration::from_secs(599));
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "idle");

                // Idle for the whole timeout: gone.
                clock.advance(Duration::from_secs(600));
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "none");
            }

            #[tokio::test]
            async fn writes_extend_the_deadline_and_cookie_once_per_touch_interval() {
                let store = probe().await;
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(600))
                    .with_absolute_timeout(None)
                    .with_touch_interval(Duration::from_secs(60));
                let app =
                    app(layer(&store, config().with_clock(clock.clone()).with_expiry(policy)));
                let cookie = send(&app, "/set?v=a", &[]).await.cookie();

                // A write within the touch interval saves the data but leaves
                // the deadline, so the client's cookie stays as it is.
                clock.advance(Duration::from_secs(30));
                let writes = store.writes();
                let reply = send(&app, "/set?v=b", &[&cookie]).await;
                assert_eq!((reply.body.as_str(), reply.set_cookie()), ("set", None));
                assert_eq!(store.writes(), writes + 1, "the data was saved");
                assert_eq!(reply.headers.get(http::header::VARY).unwrap(), "Cookie");

                // Once the interval has passed, a write slides the deadline
                // and the cookie's Max-Age with it.
                clock.advance(Duration::from_secs(30));
                let reply = send(&app, "/set?v=c", &[&cookie]).await;
                assert!(reply.set_cookie().unwrap().contains("Max-Age=600"), "{reply:?}");
                assert_eq!(reply.cookie(), cookie, "same id");
                clock.advance(Duration::from_secs(599));
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "c");
            }

            #[tokio::test]
            async fn a_write_inside_the_touch_interval_does_not_extend_the_deadline() {
                let store = probe().await;
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(600))
                    .with_absolute_timeout(None)
                    .with_touch_interval(Duration::from_secs(60));
                let app =
                    app(layer(&store, config().with_clock(clock.clone()).with_expiry(policy)));
                let cookie = send(&app, "/set?v=a", &[]).await.cookie();
                clock.advance(Duration::from_secs(30));
                assert_eq!(send(&app, "/set?v=b", &[&cookie]).await.set_cookie(), None);
                clock.advance(Duration::from_secs(570));
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "none");
            }

            #[tokio::test]
            async fn absolute_expiry_is_never_extended() {
                let store = probe().await;
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default()
                    .with_idle_timeout(Duration::from_secs(600))
                    .with_absolute_timeout(Some(Duration::from_secs(1000)))
                    .with_touch_interval(Duration::ZERO);
                let app =
                    app(layer(&store, config().with_clock(clock.clone()).with_expiry(policy)));
                let cookie = send(&app, "/set?v=abs", &[]).await.cookie();
                for _ in 0..3 {
                    clock.advance(Duration::from_secs(300));
                    assert_eq!(send(&app, "/set?v=abs", &[&cookie]).await.body, "set");
                }
                // Now at 900 s; the cookie's Max-Age counts down to the absolute deadline.
                let reply = send(&app, "/get", &[&cookie]).await;
                assert!(reply.set_cookie().unwrap().contains("Max-Age=100"));
                clock.advance(Duration::from_secs(100));
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "none");
            }

            #[tokio::test]
            async fn remember_me_overrides_the_expiry() {
                let store = probe().await;
                let clock = ManualClock::starting_now();
                let policy = ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(600));
                let app =
                    app(layer(&store, config().with_clock(clock.clone()).with_expiry(policy)));
                let reply = send(&app, "/remember", &[]).await;
                assert!(
                    reply.set_cookie().unwrap().contains(&format!("Max-Age={}", 30 * 24 * 3600))
                );
                let cookie = reply.cookie();
                clock.advance(Duration::from_secs(3600));
                send(&app, "/set?v=still", &[&cookie]).await;
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "still");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_locked_increments_lose_nothing() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let cookie = send(&app, "/set?v=counter", &[]).await.cookie();
                let mut requests = Vec::new();
                for _ in 0..50 {
                    let app = app.clone();
                    let cookie = cookie.clone();
                    requests.push(tokio::spawn(async move {
                        send(&app, "/incr", &[&cookie]).await.status
                    }));
                }
                for request in requests {
                    assert_eq!(request.await.unwrap(), 200);
                }
                assert_eq!(send(&app, "/incr", &[&cookie]).await.body, "51");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn reading_before_the_lock_loses_nothing() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let cookie = send(&app, "/set?v=counter", &[]).await.cookie();
                let mut requests = Vec::new();
                for _ in 0..50 {
                    let app = app.clone();
                    let cookie = cookie.clone();
                    requests.push(tokio::spawn(async move {
                        send(&app, "/read-then-incr", &[&cookie]).await.status
                    }));
                }
                for request in requests {
                    assert_eq!(request.await.unwrap(), 200);
                }
                assert_eq!(send(&app, "/read-then-incr", &[&cookie]).await.body, "51");
            }

            #[tokio::test]
            async fn id_collision_never_hands_over_a_session() {
                let store = probe().await;
                let repeated = SessionId::random();
                let app =
                    app(layer(&store, config().with_id_generator(RepeatingIds::new(repeated, 2))));
                let first = send(&app, "/set?v=first", &[]).await.cookie();
                assert_eq!(first, format!("id={}", repeated.expose()));
                let second = send(&app, "/set?v=second", &[]).await.cookie();
                assert_ne!(second, first, "the colliding create got a fresh id");
                assert_eq!(send(&app, "/get", &[&first]).await.body, "first");
                assert_eq!(send(&app, "/get", &[&second]).await.body, "second");
            }

            #[tokio::test]
            async fn oversized_payload_fails_and_keeps_old_data() {
                let store = probe().await;
                let app = app(layer(&store, config().with_max_payload_bytes(16 * 1024)));
                let cookie = send(&app, "/set?v=small", &[]).await.cookie();
                let reply = send(&app, "/big", &[&cookie]).await;
                assert_eq!(reply.status, 500);
                assert_eq!(reply.set_cookie(), None);
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "small");
                assert_eq!(send(&app, "/big", &[]).await.status, 500, "also for new sessions");
            }

            #[tokio::test]
            async fn a_failing_store_gives_503_and_recovers() {
                let store = probe().await;
                let app = app(layer(&store, config()));
                let cookie = send(&app, "/set?v=precious", &[]).await.cookie();
                store.fail(true);
                for path in ["/get", "/set?v=lost", "/incr"] {
                    let reply = send(&app, path, &[&cookie]).await;
                    assert_eq!(reply.status, 503, "{path}");
                    assert_eq!(reply.set_cookie(), None, "{path}");
                }
                assert_eq!(
                    send(&app, "/set?v=new", &[]).await.status,
                    503,
                    "a new session cannot be saved"
                );
                store.fail(false);
                assert_eq!(send(&app, "/get", &[&cookie]).await.body, "precious");
            }
        }
    };
}

/// A service URL from the environment; tests that need one fail loudly
/// without it instead of skipping.
pub fn service_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: run the tests with `cargo xtask test`, which starts Redis, \
             PostgreSQL and MariaDB and sets REDIS_URL, DATABASE_URL and MYSQL_URL"
        )
    })
}

/// A fresh private directory under one per-process temporary directory.
pub fn scratch_dir() -> std::path::PathBuf {
    static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap());
    tempfile::Builder::new().tempdir_in(root.path()).unwrap().keep()
}

/// A short random suffix for key prefixes and table names.
pub fn unique() -> String {
    session_axum::core::SessionId::random().storage_key().to_hex()[..12].to_owned()
}

/// Flash messages on `app`, whatever keeps the session: read once, in
/// order, across a redirect-like sequence of requests; a wrong payload type
/// is an error that loses nothing; a request that only reads writes nothing.
pub async fn flash_scenario(app: &Router) {
    let reply = send(app, "/flash/take", &[]).await;
    assert_eq!((reply.body.as_str(), reply.set_cookie()), ("none", None), "no session, none");

    let cookie = send(app, "/flash/add?level=success&text=Saved", &[]).await.cookie();
    let reply = send(app, "/flash/add?level=warning&text=Check%20mail", &[&cookie]).await;
    let cookie = reply.set_cookie().map_or(cookie, |_| reply.cookie());

    // A wrong payload type: an error, and the messages are still there.
    let reply = send(app, "/flash/take-number", &[&cookie]).await;
    assert!(reply.status.is_server_error(), "{}", reply.status);

    let reply = send(app, "/flash/take", &[&cookie]).await;
    assert_eq!(reply.body, "success:Saved|warning:Check mail");
    let cookie = reply.set_cookie().map_or(cookie, |_| reply.cookie());
    assert_eq!(send(app, "/flash/take", &[&cookie]).await.body, "none", "read once");

    // Messages sit beside the session's own data and leave it alone.
    let reply = send(app, "/set?v=kept", &[&cookie]).await;
    let cookie = reply.set_cookie().map_or(cookie, |_| reply.cookie());
    let reply = send(app, "/flash/add?level=info&text=Hi", &[&cookie]).await;
    let cookie = reply.set_cookie().map_or(cookie, |_| reply.cookie());
    assert_eq!(send(app, "/get", &[&cookie]).await.body, "kept");
    assert_eq!(send(app, "/flash/take", &[&cookie]).await.body, "info:Hi");
}

/// Concurrent requests of one session each add a flash message, then two
/// pages take them at once: every message is shown, exactly once.
pub async fn concurrent_flash_scenario(app: &Router) {
    const MESSAGES: usize = 16;
    let cookie = send(app, "/set?v=kept", &[]).await.cookie();
    let adds: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move {
                send(&app, &format!("/flash/add?level=info&text=m{i}"), &[&cookie]).await.status
            })
        })
        .collect();
    for add in adds {
        assert_eq!(add.await.unwrap(), 200);
    }
    let takes: Vec<_> = (0..2)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { send(&app, "/flash/take", &[&cookie]).await.body })
        })
        .collect();
    let mut shown: Vec<String> = Vec::new();
    for take in takes {
        let body = take.await.unwrap();
        if body != "none" {
            shown.extend(body.split('|').map(str::to_owned));
        }
    }
    shown.sort();
    let mut expected: Vec<String> = (0..MESSAGES).map(|i| format!("info:m{i}")).collect();
    expected.sort();
    assert_eq!(shown, expected, "every message, each once");
    assert_eq!(send(app, "/get", &[&cookie]).await.body, "kept");
}

/// A fresh visitor's first form: the token it renders and the session cookie
/// that now holds it.
pub async fn csrf_form(app: &Router) -> (String, String) {
    let reply = send(app, "/csrf/token", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (reply.body.clone(), reply.cookie())
}

/// CSRF protection on `app`, whatever keeps the session: the token is made
/// on the first form, safe methods pass unchecked, unsafe ones need the
/// session's own token (form field or header) and a same-origin browser,
/// and the token dies with the session.
pub async fn csrf_scenario(app: &Router) {
    // Safe methods pass unchecked, and make no session.
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        let reply = request(app, method.clone(), "/csrf/submit", &[], &[], Body::empty()).await;
        // OPTIONS and TRACE have no handler here: 405 from the router, not 403.
        assert_ne!(reply.status, 403, "{method}");
        assert_eq!(reply.set_cookie(), None, "{method}");
    }
    assert_eq!(send(app, "/csrf/submit", &[]).await.body, "read");

    // The first form makes the token (and the session); later pages show
    // the same one and write nothing.
    let (token, cookie) = csrf_form(app).await;
    assert_eq!(token.len(), 43, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    let reply = send(app, "/csrf/form", &[&cookie]).await;
    assert_eq!(reply.body, format!(r#"<input type="hidden" name="csrf_token" value="{token}">"#));
    assert_eq!(reply.set_cookie(), None, "the token is made once");
    assert_eq!(send(app, "/csrf/token", &[&cookie]).await.body, token);

    // The token in the form: passes, and the handler's `Form` sees it all.
    let form = format!("text=hello+world&csrf_token={token}");
    let reply = post_form(app, "/csrf/submit", &[&cookie], &[], &form).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "posted hello world"));
    let form = format!("csrf_token={token}&text=first%20field%3F");
    let reply = post_form(app, "/csrf/submit", &[&cookie], &[], &form).await;
    assert_eq!(reply.body, "posted first field?");
    // In the header: passes, for a form without the field and any method.
    let header = [("x-csrf-token", token.as_str())];
    let reply = post_form(app, "/csrf/submit", &[&cookie], &header, "text=by+header").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "posted by header"));
    for (method, answer) in
        [(Method::PUT, "put"), (Method::PATCH, "patched"), (Method::DELETE, "deleted")]
    {
        let reply = request(app, method.clone(), "/csrf/submit", &[&cookie], &header, "").await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, answer), "{method}");
    }

    // Missing: no field, no header, or a body that is not a URL-encoded form.
    let refused = |reply: Reply, what: &str| {
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (403, CSRF_REFUSED), "{what}");
        assert_eq!(reply.set_cookie(), None, "{what}");
    };
    refused(post_form(app, "/csrf/submit", &[&cookie], &[], "text=x").await, "no token");
    refused(post_form(app, "/csrf/submit", &[&cookie], &[], "").await, "empty form");
    refused(post_form(app, "/csrf/submit", &[&cookie], &[], "csrf_token=").await, "empty token");
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let reply = request(app, method.clone(), "/csrf/submit", &[&cookie], &[], "").await;
        refused(reply, method.as_str());
    }
    let json = [("content-type", "application/json")];
    let body = format!(r#"{{"csrf_token":"{token}"}}"#);
    let reply = request(app, Method::POST, "/csrf/submit", &[&cookie], &json, body).await;
    refused(reply, "a JSON body is not searched");
    let multipart = [("content-type", "multipart/form-data; boundary=b")];
    let body = format!(
        "--b\r\ncontent-disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n--b--\r\n"
    );
    let reply = request(app, Method::POST, "/csrf/submit", &[&cookie], &multipart, body).await;
    refused(reply, "a multipart body is not searched");

    // Wrong: of the right shape, but not the session's; or mangled.
    let (other_token, other_cookie) = csrf_form(app).await;
    assert_ne!(other_token, token, "every session has its own token");
    let mut flipped = token.clone().into_bytes();
    flipped[42] = if flipped[42] == b'A' { b'Q' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let longer = format!("{token}A");
    for wrong in
        [other_token.as_str(), flipped.as_str(), &token[..42], longer.as_str(), "' OR 1=1--"]
    {
        let form = format!("text=x&csrf_token={wrong}");
        refused(post_form(app, "/csrf/submit", &[&cookie], &[], &form).await, wrong);
        let header = [("x-csrf-token", wrong)];
        refused(post_form(app, "/csrf/submit", &[&cookie], &header, "text=x").await, wrong);
    }
    // A wrong header is not rescued by the right field.
    let form = format!("text=x&csrf_token={token}");
    let header = [("x-csrf-token", other_token.as_str())];
    refused(post_form(app, "/csrf/submit", &[&cookie], &header, &form).await, "header first");
    // Another session's token is refused with this cookie, and this one's
    // with the other cookie; each works with its own.
    let form = format!("text=mine&csrf_token={other_token}");
    let reply = post_form(app, "/csrf/submit", &[&other_cookie], &[], &form).await;
    assert_eq!(reply.body, "posted mine");
    let form = format!("text=x&csrf_token={token}");
    refused(post_form(app, "/csrf/submit", &[&other_cookie], &[], &form).await, "swapped");
    // Without a session, no token is right.
    refused(post_form(app, "/csrf/submit", &[], &[], &form).await, "no session");

    // Cross-origin: refused even with the right token.
    let with_token = format!("text=x&csrf_token={token}");
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
            ("host", "app.example"),
        ],
        vec![("origin", "https://evil.example"), ("host", "app.example")],
        vec![("origin", "https://app.example.evil.example"), ("host", "app.example")],
        vec![("origin", "null"), ("host", "app.example")],
        vec![("origin", "https://admin.example")],
    ] {
        let reply = post_form(app, "/csrf/submit", &[&cookie], &headers, &with_token).await;
        refused(reply, &format!("{headers:?}"));
    }
    // Same-origin browser headers pass.
    for headers in [
        vec![("sec-fetch-site", "same-origin"), ("origin", "https://app.example")],
        vec![("sec-fetch-site", "none")],
        vec![("origin", "https://app.example"), ("host", "app.example")],
        vec![("origin", "http://localhost:3000"), ("host", "localhost:3000")],
    ] {
        let reply = post_form(app, "/csrf/submit", &[&cookie], &headers, &with_token).await;
        assert_eq!(reply.body, "posted x", "{headers:?}");
    }
    // A trusted origin passes the origin check, never the token check.
    let trusted = [("sec-fetch-site", "same-site"), ("origin", "https://admin.example")];
    let header = [trusted[0], trusted[1], ("x-csrf-token", token.as_str())];
    let reply = request(app, Method::POST, "/csrf/trusting", &[&cookie], &header, "").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "trusted"));
    let reply = request(app, Method::POST, "/csrf/trusting", &[&cookie], &trusted, "").await;
    refused(reply, "trusted origin without a token");
    let foreign = [("origin", "https://evil.example"), ("host", "app.example"), header[2]];
    let reply = request(app, Method::POST, "/csrf/trusting", &[&cookie], &foreign, "").await;
    refused(reply, "untrusted origin");

    // The form is read up to the layer's limit; the header needs no body.
    let form = format!("csrf_token={token}&text={}", "x".repeat(300));
    let reply = post_form(app, "/csrf/small", &[&cookie], &[], &form).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let header = [("x-csrf-token", token.as_str())];
    let reply = post_form(app, "/csrf/small", &[&cookie], &header, &form).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let form = format!("csrf_token={token}&text=short");
    assert_eq!(post_form(app, "/csrf/small", &[&cookie], &[], &form).await.body, "posted short");

    // The session ends (logout): the browser's next session has another
    // token, and the old one is refused.
    let reply = send(app, "/destroy", &[&cookie]).await;
    assert!(reply.set_cookie().unwrap().contains("Max-Age=0"));
    let form = format!("text=x&csrf_token={token}");
    refused(post_form(app, "/csrf/submit", &[], &[], &form).await, "after logout");
    let (fresh, fresh_cookie) = csrf_form(app).await;
    assert_ne!(fresh, token);
    refused(post_form(app, "/csrf/submit", &[&fresh_cookie], &[], &form).await, "old token");
    let form = format!("text=new&csrf_token={fresh}");
    assert_eq!(
        post_form(app, "/csrf/submit", &[&fresh_cookie], &[], &form).await.body,
        "posted new"
    );
}

/// Server-side only: the ended session's cookie is dead, so its token is
/// refused even with it (a client-side cookie stays valid until its deadline).
pub async fn csrf_token_dies_with_the_session(app: &Router) {
    let (token, cookie) = csrf_form(app).await;
    let form = format!("text=x&csrf_token={token}");
    assert_eq!(post_form(app, "/csrf/submit", &[&cookie], &[], &form).await.status, 200);
    send(app, "/destroy", &[&cookie]).await;
    let reply = post_form(app, "/csrf/submit", &[&cookie], &[], &form).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (403, CSRF_REFUSED));
}

/// On an app whose layer answers with [`CsrfPage`]: refusals are its CSRF
/// page, with the reason; passing requests are not.
pub async fn csrf_responder_scenario(app: &Router) {
    let (token, cookie) = csrf_form(app).await;
    let page = |reply: Reply, reason: &str| {
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (403, format!("csrf page: {reason}").as_str())
        );
    };
    page(post_form(app, "/csrf/submit", &[&cookie], &[], "text=x").await, "MissingToken");
    let form = "text=x&csrf_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    page(post_form(app, "/csrf/submit", &[&cookie], &[], form).await, "WrongToken");
    let form = format!("text=x&csrf_token={token}");
    page(post_form(app, "/csrf/submit", &[], &[], &form).await, "NoStoredToken");
    let cross = [("sec-fetch-site", "cross-site")];
    page(post_form(app, "/csrf/submit", &[&cookie], &cross, &form).await, "CrossOrigin");
    let big = format!("{form}&pad={}", "x".repeat(300));
    let reply = post_form(app, "/csrf/small", &[&cookie], &[], &big).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (413, "csrf page: FormTooLarge"));
    assert_eq!(post_form(app, "/csrf/submit", &[&cookie], &[], &form).await.body, "posted x");
}
