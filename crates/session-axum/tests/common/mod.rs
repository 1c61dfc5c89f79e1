//! Shared HTTP tests: `route_tests!(make_store)` runs every scenario through
//! the real `SessionLayer` on one store. Each store's test file invokes it.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::Query;
use axum::routing::get;
use axum::{Router, http::StatusCode};
use http::{HeaderMap, Request, header};
use http_body_util::BodyExt;
use session_axum::core::SessionExpiry;
use session_axum::core::{
    Error, LockGuard, LockOptions, LockingStore, Record, SessionStore, StorageKey, Timestamp,
    async_trait,
};
use session_axum::flash::{Flash, Level};
use session_axum::{Session, SessionConfig, SessionError, SessionLayer};
use tower::ServiceExt;

pub mod races;

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
        .route(
            "/incr",
            get(|session: Session| async move {
                let locked = session.lock().await?;
                let n = locked.get::<u64>("n").await?.unwrap_or(0) + 1;
                tokio::task::yield_now().await;
                locked.insert("n", n).await?;
                Ok::<_, SessionError>(n.to_string())
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

pub fn config() -> SessionConfig {
    SessionConfig::default()
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
                    assert_eq!(reply.set_cookie(), None, "{cookie:.40}");
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
            "{variable} is not set: run the tests with `cargo xtask test`, which starts Redis and \
             PostgreSQL and sets REDIS_URL and DATABASE_URL"
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
