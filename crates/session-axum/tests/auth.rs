//! The auth scenarios on the memory store, plus auth behaviour that does not
//! depend on the store. Redis, Postgres and MySQL come from `REDIS_URL` /
//! `DATABASE_URL` / `MYSQL_URL`, PgBouncer (Postgres in lease mode) from
//! `PGBOUNCER_URL`, which `cargo xtask test` sets.

#![allow(clippy::expect_used)] // Store constructors in test helpers.

mod auth_common;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use session_axum::auth::{AuthRejection, LoginOptions, SessionInfo, permission_required_async};
use session_axum::memory::MemoryStore;
use session_axum::{
    Auth, AuthLayer, CurrentUser, SessionKind, SessionLayer, login_required, permission_required,
};

use auth_common::{
    DownStore, ErrorLog, NumericUsers, TestUser, TestUsers, config, fixture, login, send, teapot,
    unknown_session_cookie,
};

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

auth_tests!(make_store);
auth_race_tests!(make_store);

/// The URL of a service that `cargo xtask test` starts; the test fails
/// (never skips) without it.
#[cfg(any(feature = "redis", feature = "postgres", feature = "mysql"))]
fn service_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with `cargo xtask test`, which starts the services")
    })
}

/// A directory that outlives the test process's stores (removed by the OS
/// temp cleanup, not by us: stores may still be writing when a test ends).
#[cfg(any(feature = "sqlite", feature = "fs"))]
fn scratch_dir() -> std::path::PathBuf {
    tempfile::tempdir().expect("a temporary directory").keep()
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use session_axum::sqlite::SqliteStore;

    async fn make_store() -> SqliteStore {
        let path = crate::scratch_dir().join("sessions.sqlite3");
        SqliteStore::open(path).await.expect("a SQLite store")
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

#[cfg(feature = "redis")]
mod redis {
    use session_axum::core::SessionId;
    use session_axum::redis::RedisStore;

    async fn make_store() -> RedisStore {
        let url = crate::service_url("REDIS_URL");
        let prefix = format!("auth-tests:{}:", SessionId::random().expose());
        RedisStore::from_url(&url).expect("a Redis store").with_prefix(prefix)
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

#[cfg(feature = "redis-cluster")]
mod redis_cluster {
    use session_axum::core::SessionId;
    use session_axum::redis::RedisStore;

    async fn make_store() -> RedisStore {
        let urls = crate::service_url("REDIS_CLUSTER_URLS");
        let prefix = format!("auth-tests:{}:", SessionId::random().expose());
        RedisStore::cluster(urls.split(',')).expect("a Redis Cluster store").with_prefix(prefix)
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

#[cfg(feature = "postgres")]
mod postgres {
    use session_axum::postgres::{PgPool, PostgresStore};

    async fn make_store() -> PostgresStore {
        let url = crate::service_url("DATABASE_URL");
        let pool = PgPool::connect(&url).await.expect("a Postgres pool");
        // One table for every run: users and session ids are random per test.
        let store = PostgresStore::new(pool).with_table_name("axum_auth_tests").expect("a name");
        store.migrate().await.expect("migrations");
        store
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

/// Lease mode through PgBouncer in transaction pooling mode (`PGBOUNCER_URL`).
#[cfg(feature = "postgres")]
mod postgres_lease_pgbouncer {
    use session_axum::postgres::{LockMode, PgConnectOptions, PgPoolOptions, PostgresStore};

    async fn make_store() -> PostgresStore {
        let options: PgConnectOptions =
            crate::service_url("PGBOUNCER_URL").parse().expect("a PostgreSQL URL");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // PgBouncer refuses sqlx's `extra_float_digits` startup parameter.
            .connect_with(options.extra_float_digits(None))
            .await
            .expect("a pool through PgBouncer");
        let store = PostgresStore::new(pool)
            .with_table_name("axum_auth_tests_lease")
            .expect("a name")
            .with_lock_mode(LockMode::Lease);
        store.migrate().await.expect("migrations");
        store
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

#[cfg(feature = "mysql")]
mod mysql {
    use session_axum::mysql::{MySqlPool, MySqlStore};

    async fn make_store() -> MySqlStore {
        let url = crate::service_url("MYSQL_URL");
        let pool = MySqlPool::connect(&url).await.expect("a MySQL pool");
        // One table for every run: users and session ids are random per test.
        let store = MySqlStore::new(pool).with_table_name("axum_auth_tests").expect("a name");
        store.migrate().await.expect("migrations");
        store
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

#[cfg(feature = "fs")]
mod fs {
    use session_axum::fs::FsStore;

    async fn make_store() -> FsStore {
        FsStore::new(crate::scratch_dir().join("sessions")).expect("a filesystem store")
    }

    crate::auth_tests!(make_store);
    crate::auth_race_tests!(make_store);
}

// Missing layers: every extractor and guard answers 500 naming the layer,
// and logs it, rather than serving an anonymous user.

/// Each auth extractor and guard on its own route, with no layer around them.
fn unwrapped_routes() -> Router {
    fn guarded(path: &str, layer: impl Fn(Router) -> Router) -> Router {
        layer(Router::new().route(path, get(|| async { "passed" })))
    }
    Router::new()
        .route("/current", get(|user: CurrentUser<TestUser>| async move { user.name.clone() }))
        .route(
            "/optional",
            get(|user: Option<CurrentUser<TestUser>>| async move {
                if user.is_some() { "some" } else { "none" }
            }),
        )
        .route("/auth", get(|_: Auth<TestUser>| async { "auth" }))
        .merge(guarded("/login-required", |r| r.route_layer(login_required::<TestUser>())))
        .merge(guarded("/login-redirect", |r| {
            r.route_layer(login_required::<TestUser>().redirect_to("/login"))
        }))
        .merge(guarded("/permission", |r| {
            r.route_layer(permission_required::<TestUser>(|user| user.admin))
        }))
        .merge(guarded("/permission-async", |r| {
            r.route_layer(permission_required_async::<TestUser>(|user| async move { user.admin }))
        }))
}

const UNWRAPPED: [&str; 7] = [
    "/current",
    "/optional",
    "/auth",
    "/login-required",
    "/login-redirect",
    "/permission",
    "/permission-async",
];

/// Asserts that every route of `app` answers 500 with a body containing each
/// of `needles`, and logs that message at error level.
async fn assert_missing_layer(app: &Router, needles: &[&str]) {
    let log = ErrorLog::start();
    for path in UNWRAPPED {
        // With a session cookie too: nothing may be looked up either way.
        for cookies in [vec![], vec![unknown_session_cookie()]] {
            let cookies: Vec<&str> = cookies.iter().map(String::as_str).collect();
            let reply = send(app, path, &cookies).await;
            assert_eq!(reply.status, 500, "{path}: {}", reply.body);
            for needle in needles {
                assert!(reply.body.contains(needle), "{path}: {needle:?} in {:?}", reply.body);
            }
            let logged = log.take();
            assert!(
                logged.iter().any(|message| message == &reply.body),
                "{path}: {logged:?} should hold {:?}",
                reply.body
            );
        }
    }
}

#[tokio::test]
async fn without_the_auth_layer_everything_is_a_500_naming_it() {
    let app = unwrapped_routes().layer(SessionLayer::new(MemoryStore::new()));
    assert_missing_layer(
        &app,
        &["Missing auth layer", "TestUser", "`default`", "add an `AuthLayer`"],
    )
    .await;
}

#[tokio::test]
async fn without_the_session_layer_everything_is_a_500_naming_it() {
    let app = unwrapped_routes().layer(AuthLayer::new(TestUsers::default()));
    assert_missing_layer(&app, &["Missing session layer", "`default`", "add a `SessionLayer`"])
        .await;
}

#[tokio::test]
async fn without_any_layer_the_auth_layer_is_named_first() {
    assert_missing_layer(&unwrapped_routes(), &["Missing auth layer", "TestUser"]).await;
}

#[tokio::test]
async fn a_missing_layer_is_a_500_even_with_a_custom_error_responder() {
    // The responder answers failures; a wiring mistake must still name the
    // layer to add.
    let sessions = SessionLayer::new(MemoryStore::new())
        .with_config(config().with_error_responder(teapot))
        .expect("a valid session config");
    let app = unwrapped_routes().layer(sessions);
    assert_missing_layer(&app, &["Missing auth layer", "TestUser"]).await;
}

/// A second session kind, for `for_kind`.
struct Admin;

impl SessionKind for Admin {
    const NAME: &'static str = "admin";
}

#[tokio::test]
async fn a_guard_for_another_kind_names_that_kind() {
    let app = Router::new()
        .route("/", get(|| async { "passed" }))
        .route_layer(login_required::<TestUser>().redirect_to("/login").for_kind::<Admin>())
        .layer(AuthLayer::new(TestUsers::default()))
        .layer(SessionLayer::new(MemoryStore::new()));
    let reply = send(&app, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("on session kind `admin`"), "{}", reply.body);
}

// `for_kind` keeps what the layers were configured with.

fn admin_app(users: TestUsers) -> Router {
    let login_users = users.clone();
    let pages = Router::new()
        .route(
            "/admin/page",
            get(|user: CurrentUser<TestUser, Admin>| async move { user.name.clone() }),
        )
        .route_layer(permission_required::<TestUser>(|user| user.admin).for_kind::<Admin>())
        .route("/admin/async", get(|| async { "async" }))
        .route_layer(
            permission_required_async::<TestUser>(|user| async move { user.admin })
                .for_kind::<Admin>(),
        )
        .route_layer(login_required::<TestUser>().redirect_to("/admin/login").for_kind::<Admin>());
    Router::new()
        .route(
            "/admin/login/{id}",
            get(move |auth: Auth<TestUser, Admin>, Path(id): Path<String>| {
                let users = login_users.clone();
                async move {
                    let Some(user) = users.get(&id) else {
                        return Ok::<_, AuthRejection>("no such user");
                    };
                    auth.login(&user).await?;
                    Ok("logged in")
                }
            }),
        )
        .merge(pages)
        .layer(AuthLayer::new(users).for_kind::<Admin>())
        .layer(SessionLayer::new(MemoryStore::new()).for_kind::<Admin>())
}

#[tokio::test]
async fn for_kind_keeps_the_guards_and_the_loader() {
    let users = TestUsers::default();
    let app = admin_app(users.clone());
    let root = users.add("root", true);
    let bob = users.add("bob", false);

    // The redirect survives `for_kind`.
    for path in ["/admin/page", "/admin/async"] {
        let reply = send(&app, path, &[]).await;
        assert_eq!(reply.status, 303, "{path}: {}", reply.body);
        assert_eq!(reply.location(), format!("/admin/login?next={path}"));
    }

    let login = |user: &TestUser| {
        let path = format!("/admin/login/{}", user.id);
        let app = app.clone();
        async move {
            let reply = send(&app, &path, &[]).await;
            assert_eq!(reply.body, "logged in");
            let cookie = reply.cookie();
            assert!(cookie.starts_with("admin="), "{cookie}");
            cookie
        }
    };
    let root = login(&root).await;
    let bob = login(&bob).await;

    // So do the predicates, and the loader.
    assert_eq!(users.calls(), 0);
    let reply = send(&app, "/admin/page", &[&root]).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "root"));
    assert_eq!(users.calls(), 1, "the loader registered before `for_kind`");
    assert_eq!(send(&app, "/admin/async", &[&root]).await.body, "async");
    for path in ["/admin/page", "/admin/async"] {
        let reply = send(&app, path, &[&bob]).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (403, "Forbidden.\n"), "{path}");
    }
}

// Failures answer through the configured error responder.

#[tokio::test]
async fn a_failing_loader_answers_through_the_configured_responder() {
    let f = fixture(MemoryStore::new(), config().with_error_responder(teapot));
    let alice = f.users.add("alice", false);
    let admin = f.users.add("root", true);
    let cookie = login(&f.app, &alice).await;
    let admin = login(&f.app, &admin).await;
    f.users.fail(true);
    for cookie in [&cookie, &admin] {
        for path in [
            "/me",
            "/maybe",
            "/many",
            "/protected",
            "/admin",
            "/admin-async",
            "/sessions",
            "/logout-everywhere",
        ] {
            let reply = send(&f.app, path, &[cookie]).await;
            assert_eq!(
                (reply.status.as_u16(), reply.body.as_str()),
                (418, "teapot: user store: user database is down"),
                "{path}"
            );
            assert_eq!(reply.set_cookie(), None, "{path}");
        }
    }
    // `AuthRejection::status` is the responder's too.
    let reply = send(&f.app, "/rejection-status", &[&cookie]).await;
    assert_eq!(reply.body, "418 loading the user failed: user database is down");

    f.users.fail(false);
    assert_eq!(send(&f.app, "/me", &[&cookie]).await.body, "alice");
}

#[tokio::test]
async fn a_failing_loader_is_503_with_the_default_responder() {
    let f = fixture(MemoryStore::new(), config());
    let alice = f.users.add("alice", false);
    let cookie = login(&f.app, &alice).await;
    f.users.fail(true);
    let reply = send(&f.app, "/me", &[&cookie]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (503, "Session store unavailable; please retry.\n")
    );
    let reply = send(&f.app, "/rejection-status", &[&cookie]).await;
    assert_eq!(reply.body, "503 loading the user failed: user database is down");
}

#[tokio::test]
async fn a_failing_session_store_answers_through_the_configured_responder() {
    let users = TestUsers::default();
    let alice = users.add("alice", false);
    let layer = SessionLayer::new(DownStore)
        .with_config(config().with_error_responder(teapot))
        .expect("a valid session config");
    let app = auth_common::app(layer, users, NumericUsers::default());
    let cookie = unknown_session_cookie();
    let login = format!("/login/{}", alice.id);
    for path in [
        "/me",
        "/maybe",
        "/many",
        "/protected",
        "/protected-redirect",
        "/admin",
        "/admin-async",
        login.as_str(),
        "/logout",
        "/sessions",
        "/logout-everywhere",
    ] {
        let reply = send(&app, path, &[&cookie]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (418, "teapot: down store: connection refused"),
            "{path}"
        );
    }
    let reply = send(&app, "/rejection-status", &[&cookie]).await;
    assert_eq!(reply.body, "418 down store: connection refused");
}

#[tokio::test]
async fn access_decisions_are_not_the_responders() {
    // 401, 403 and the login redirect are answers, not failures: a custom
    // responder leaves them alone.
    let f = fixture(MemoryStore::new(), config().with_error_responder(teapot));
    let reply = send(&f.app, "/me", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (401, "Login required.\n"));
    assert_eq!(send(&f.app, "/maybe", &[]).await.body, "anonymous");
    assert_eq!(send(&f.app, "/protected", &[]).await.status, 401);
    assert_eq!(send(&f.app, "/protected-redirect", &[]).await.status, 303);
    assert_eq!(send(&f.app, "/rejection-status", &[]).await.body, "401 Login required.\n");
    let bob = f.users.add("bob", false);
    let bob = login(&f.app, &bob).await;
    let reply = send(&f.app, "/admin", &[&bob]).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (403, "Forbidden.\n"));
}

/// Every `Auth` method fails with the same type (this only has to compile).
#[allow(dead_code)]
async fn every_auth_method_fails_with_auth_rejection(auth: Auth<TestUser>, user: TestUser) {
    let _: Result<(), AuthRejection> = auth.login(&user).await;
    let _: Result<(), AuthRejection> = auth.login_with(&user, LoginOptions::new()).await;
    let _: Result<Option<CurrentUser<TestUser>>, AuthRejection> = auth.user().await;
    let _: Result<Vec<SessionInfo>, AuthRejection> = auth.sessions().await;
    let _: Result<u64, AuthRejection> = auth.logout_everywhere().await;
    let _: Result<(), AuthRejection> = auth.logout().await;
}

/// CORS preflights are a CORS layer's to answer, outside the guard: the
/// layer answers a preflight (no credentials, no handler run; tower-http's
/// answers every `OPTIONS`), and the real cross-origin request that follows
/// meets the guard. Without a CORS layer, `OPTIONS` meets the guard too
/// (`options_requests_are_guarded_like_any_other`).
#[tokio::test]
async fn cors_preflights_are_answered_outside_the_guard() {
    use http::{Method, Request, header};
    use tower::ServiceExt;
    use tower_http::cors::{AllowOrigin, CorsLayer};

    let f = fixture(MemoryStore::new(), config());
    let origin = "https://app.example";
    let app = f.app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::exact(http::HeaderValue::from_static(origin)))
            .allow_methods([Method::GET, Method::DELETE])
            .allow_credentials(true),
    );
    let preflight = Request::options("/any")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
        .body(axum::body::Body::empty())
        .expect("a request");
    let reply = app.clone().oneshot(preflight).await.expect("infallible");
    assert_eq!(reply.status(), 200, "the CORS layer answers the preflight");
    assert_eq!(reply.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    let body = http_body_util::BodyExt::collect(reply.into_body()).await.expect("a body");
    assert!(body.to_bytes().is_empty(), "answered by the CORS layer, not the handler");

    let actual = Request::delete("/any")
        .header(header::ORIGIN, origin)
        .body(axum::body::Body::empty())
        .expect("a request");
    let reply = app.oneshot(actual).await.expect("infallible");
    assert_eq!(reply.status(), 401, "the request after the preflight meets the guard");
    assert_eq!(
        reply.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        origin,
        "readable by the page"
    );
}
