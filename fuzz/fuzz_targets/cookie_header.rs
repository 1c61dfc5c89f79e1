//! `Cookie` request headers through the real `SessionLayer` (memory store).
//!
//! The layer's cookie parsing is crate-private, so this drives it the way a
//! client does: an axum app with a few session routes, called with
//! `tower::ServiceExt::oneshot` on a current-thread runtime.
//!
//! Input: the first byte picks the route; the rest, split at `\n`, is one
//! `Cookie` header per line (lines that are not valid header values are
//! dropped, as hyper would refuse them).
//!
//! Properties: no panic; every response is 200 (never a 500, whatever the
//! cookie); at most one `Set-Cookie`; a session is only ever found when the
//! header carries its exact id (the app holds one known session, with id
//! `AAAAAAAAAAAAAAAAAAAAAA`, recreated whenever a request ends it).
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use session_axum::{Session, SessionConfig, SessionError, SessionLayer};
use session_core::{ExpiryPolicy, SessionId, SessionStore, Timestamp};
use session_stores_memory::MemoryStore;
use tower::ServiceExt;

const KNOWN_VALUE: &str = "known";
/// Requests before the store is replaced, so sessions created by `/set`
/// do not pile up during a long run.
const REQUESTS_PER_STORE: u32 = 20_000;

fn known_id() -> SessionId {
    SessionId::from_bytes([0; 16])
}

fn app(store: MemoryStore) -> Router {
    Router::new()
        .route(
            "/get",
            get(|session: Session| async move {
                let value: Option<String> = session.get("v").await?;
                Ok::<_, SessionError>(value.unwrap_or_else(|| "none".into()))
            }),
        )
        .route(
            "/set",
            get(|session: Session| async move {
                session.insert("v", "written").await?;
                Ok::<_, SessionError>("set")
            }),
        )
        .route(
            "/incr",
            get(|session: Session| async move {
                let locked = session.lock().await?;
                let n = locked.get::<u64>("n").await?.unwrap_or(0).saturating_add(1);
                locked.insert("n", n).await?;
                Ok::<_, SessionError>(n.to_string())
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
        .route("/noop", get(|| async { "noop" }))
        .layer(SessionLayer::new(store).with_config(SessionConfig::default()).expect("a valid session config"))
}

struct World {
    runtime: tokio::runtime::Runtime,
    store: MemoryStore,
    app: Router,
    requests: u32,
}

impl World {
    fn new() -> Self {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => panic!("runtime: {error}"),
        };
        let store = MemoryStore::new();
        let app = app(store.clone());
        Self { runtime, store, app, requests: 0 }
    }

    fn fresh_store(&mut self) {
        self.store = MemoryStore::new();
        self.app = app(self.store.clone());
        self.requests = 0;
    }

    /// Puts the known session back if a request cycled or destroyed it.
    async fn ensure_known(store: &MemoryStore) {
        let now = Timestamp::now();
        let key = known_id().storage_key();
        if matches!(store.load(&key, now).await, Ok(Some(_))) {
            return;
        }
        let mut record = ExpiryPolicy::default()
            .with_idle_timeout(Duration::from_secs(3600))
            .new_record(key, now);
        record.data.insert_value("v", KNOWN_VALUE.into());
        if let Err(error) = store.create(&record).await {
            panic!("creating the known session: {error}");
        }
    }
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::new());
}

const ROUTES: [&str; 6] = ["/get", "/set", "/incr", "/cycle", "/destroy", "/noop"];

fuzz_target!(|data: &[u8]| {
    let Some((&route, cookies)) = data.split_first() else { return };
    let path = ROUTES[usize::from(route) % ROUTES.len()];
    let mut request = Request::get(path);
    let mut raw_headers = Vec::new();
    for line in cookies.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            request = request.header(header::COOKIE, value);
            raw_headers.push(line);
        }
    }
    let Ok(request) = request.body(Body::empty()) else { return };
    let known = known_id().expose();
    let carries_known = raw_headers
        .iter()
        .any(|line| line.windows(known.len()).any(|window| window == known.as_bytes()));

    WORLD.with_borrow_mut(|world| {
        world.requests += 1;
        if world.requests > REQUESTS_PER_STORE {
            world.fresh_store();
        }
        let (store, app) = (world.store.clone(), world.app.clone());
        world.runtime.block_on(async move {
            World::ensure_known(&store).await;
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            };
            let status = response.status();
            let set_cookies = response.headers().get_all(header::SET_COOKIE).iter().count();
            let body = match response.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(error) => panic!("body: {error}"),
            };
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert!(set_cookies <= 1, "{path}: {set_cookies} Set-Cookie headers");
            if path == "/get" && !carries_known {
                assert_eq!(body, "none", "a session was found without its id in the header");
            }
        });
    });
});
