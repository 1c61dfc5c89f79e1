//! The hostile-input catalogue (`docs/hostile-inputs.md`), layer level:
//! every row that the `SessionLayer` (and the auth layer on top of it)
//! answers for, as one test per row and store, named after the row.
//!
//! | row | what | stores |
//! |-----|------|--------|
//! | 1-4 | malformed, control-character, repeated and oversized `Cookie` headers | every server-side store; every cookie format |
//! | 5-8 | unknown, malformed, path-like and SQL-shaped ids | every server-side store |
//! | 20 | stored auth data of the wrong shape: 401 | every store and format |
//! | 21 | payload over the limit: error at save, old data kept | every store and format |
//! | 22 | store down before / failing during a request: 503, data kept | every server-side store (a failing wrapper); Redis and Postgres also unreachable for real |
//! | 23 | lock held elsewhere: 503 after the wait timeout | every server-side store |
//! | 25 | concurrent locked writers through two store instances: no lost update | every server-side store |
//! | 26 | id collision on create: no session handed over | every server-side store |
//! | 27 | password change ends the user's other sessions | every store and format |
//! | 28 | logout: the old id is dead in every process | every server-side store; cookie formats: the documented gap |
//!
//! Rows 9-19 and 24 are about one store or format and live in that crate's
//! `tests/bad_inputs.rs` (or the test files it names).
//!
//! Server-side stores run through `server_rows!(stores)`, where `stores`
//! gives two instances on one backend (two "processes"; clones for the
//! memory store). Cookie formats run through `client_rows!(format)`.
//! Redis and Postgres come from `REDIS_URL` / `DATABASE_URL` (set by
//! `cargo xtask test`); without them those tests fail, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

// Both support modules bring the shared wire client and handlers; two copies
// here are harmless.
#[allow(clippy::duplicate_mod)]
mod auth_common;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use session_axum::core::LockingStore;
use session_axum::core::testing::RepeatingIds;
use session_axum::core::{
    CookieFormat, Error, LockOptions, Opened, Record, SessionId, StorageKey, Timestamp,
};
use session_axum::{Session, SessionConfig, SessionError, SessionLayer};

use common::{Probe, Reply, app, config, send};

/// The storage key of the session a `name=value` cookie carries.
fn key_of(cookie: &str) -> StorageKey {
    let (_, value) = cookie.split_once('=').expect("name=value");
    value.parse::<SessionId>().expect("a session id").storage_key()
}

/// The raw id of a `id=<id>` cookie.
fn id_of(cookie: &str) -> &str {
    cookie.strip_prefix("id=").expect("an `id` cookie")
}

/// The value under "v" in the stored session, read through `store`.
async fn stored_v(store: &impl LockingStore, cookie: &str) -> Option<String> {
    let record = store.load(&key_of(cookie), Timestamp::now()).await.expect("load")?;
    record.data.get::<String>("v").expect("v is a string")
}

/// A server-side fixture: the test app on a probed instance, and a second
/// instance on the same backend that the app does not use.
struct Server<S: LockingStore + Clone> {
    probe: Probe<S>,
    app: Router,
    other: S,
    /// A session holding `v = "secret"`, as a `name=value` cookie.
    victim: String,
}

impl<S: LockingStore + Clone> Server<S> {
    async fn new((store, other): (S, S), config: SessionConfig) -> Self {
        let probe = Probe::new(store);
        let app = app(SessionLayer::new(probe.clone())
            .with_config(config)
            .expect("a valid session config"));
        let victim = send(&app, "/set?v=secret", &[]).await.cookie();
        Self { probe, app, other, victim }
    }

    /// An app on the second instance, as another process would run it.
    fn other_app(&self, config: SessionConfig) -> Router {
        app(SessionLayer::new(self.other.clone())
            .with_config(config)
            .expect("a valid session config"))
    }

    /// Sends each session cookie header alone to `/get` and checks it is
    /// served as no session without any store call, and cleared like an
    /// unknown id; then that the victim is intact.
    async fn served_unread(&self, cookies: &[String]) {
        self.served_unread_clearing(cookies, true).await;
    }

    /// As [`served_unread`](Self::served_unread) for headers that hold no
    /// cookie of the session's name: nothing to clear.
    async fn served_as_no_cookie(&self, headers: &[String]) {
        self.served_unread_clearing(headers, false).await;
    }

    async fn served_unread_clearing(&self, cookies: &[String], cleared: bool) {
        let (loads, writes) = (self.probe.loads(), self.probe.writes());
        for cookie in cookies {
            let reply = send(&self.app, "/get", &[cookie]).await;
            assert_eq!(reply.status, 200, "{cookie:.60}");
            assert_eq!(reply.body, "none", "{cookie:.60}");
            match reply.set_cookie() {
                Some(set) if cleared => assert!(
                    set.starts_with("id=;") && set.contains("Max-Age=0"),
                    "{cookie:.60}: {set}"
                ),
                set => assert_eq!(set, None, "{cookie:.60}"),
            }
            // A request that leaves the session alone answers nothing about it.
            assert_eq!(send(&self.app, "/noop", &[cookie]).await.set_cookie(), None);
        }
        assert_eq!(self.probe.loads(), loads, "malformed cookies never reach the store");
        assert_eq!(self.probe.writes(), writes, "nor write anything");
        self.victim_intact().await;
    }

    async fn victim_intact(&self) {
        assert_eq!(send(&self.app, "/get", &[&self.victim]).await.body, "secret");
        assert_eq!(stored_v(&self.other, &self.victim).await.as_deref(), Some("secret"));
    }
}

fn cookies(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| format!("id={value}")).collect()
}

/// A spelling of `id` with the same bytes under a lenient base64 decoder:
/// the last character's unused low bits set.
fn non_canonical_alias(id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = id.as_bytes()[id.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).expect("base64url");
    format!("{}{}", &id[..id.len() - 1], char::from(ALPHABET[index | 0b1111]))
}

/// The rows, one `async fn` each; the macros below name a test after each.
mod rows {
    use super::*;

    type Stores<S> = (S, S);

    /// Cookie values that are not base64url (`!!!`, empty) are no session,
    /// never reach the store, and are cleared; headers without a cookie of
    /// the session's name (`=x`, a bare name) are no session either.
    pub(crate) async fn row01<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let hostile = cookies(&["!!!", "", "====", "*", "a.b.c", "%", "\\"]);
        server.served_unread(&hostile).await;
        let nameless = ["id".to_owned(), "id;".to_owned(), ";;;".to_owned(), "=x".to_owned()];
        server.served_as_no_cookie(&nameless).await;
        // A write with a malformed cookie starts a fresh session.
        let reply = send(&server.app, "/set?v=fresh", &["id=!!!"]).await;
        assert!(reply.cookie().strip_prefix("id=").unwrap().parse::<SessionId>().is_ok());
    }

    /// Quoted, tab-split, percent-escaped (`%00`, `%0D%0A`) and non-ASCII
    /// cookie values are no session and never reach the store; raw NUL and
    /// CR/LF cannot even form a header.
    pub(crate) async fn row02<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let victim = id_of(&server.victim).to_owned();
        let hostile = cookies(&[
            &format!("\"{victim}\""),
            &format!("{}\t{}", &victim[..11], &victim[12..]),
            &format!("{}%00", &victim[..19]),
            &format!("{}%0D%0A", &victim[..16]),
            "%ZZ",
            "%00",
        ]);
        server.served_unread(&hostile).await;
        // NUL, CR, LF and DEL cannot be in a header value at all: http
        // refuses them before a request exists.
        for bad in [&b"id=a\0b"[..], b"id=a\rb", b"id=a\nb", b"id=a\x7fb"] {
            assert!(http::HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
        }
        // Non-ASCII (obs-text) can arrive; it is not an id.
        let loads = server.probe.loads();
        for raw in [&b"id=\xc3\xa9t\xc3\xa9"[..], b"id=\xff\xfe", b"\xff=\xff"] {
            let request = http::Request::get("/get")
                .header(http::header::COOKIE, http::HeaderValue::from_bytes(raw).unwrap())
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower::ServiceExt::oneshot(server.app.clone(), request).await.unwrap();
            assert_eq!(response.status(), 200, "{raw:?}");
        }
        assert_eq!(server.probe.loads(), loads);
        server.victim_intact().await;
    }

    /// The id among junk cookies and across several `Cookie` headers is found;
    /// an unknown well-formed id in front of it is not adopted and leaves it alone.
    pub(crate) async fn row03<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let victim = server.victim.as_str();
        let unknown = format!("id={}", SessionId::random().expose());
        // The real id among junk, in separate headers and in one header.
        let found: [&[&str]; 3] = [
            &["id=!!!", "other=1", victim],
            &[victim, "id=!!!"],
            &[&format!("a=1; id=!!!; {victim}; id=%ZZ")],
        ];
        for headers in found {
            let reply = send(&server.app, "/get", headers).await;
            assert_eq!(
                (reply.status.as_u16(), reply.body.as_str()),
                (200, "secret"),
                "{headers:?}"
            );
        }
        // The first well-formed id wins; an unknown one is not adopted and
        // the real one behind it is neither used nor harmed.
        let writes = server.probe.writes();
        let reply = send(&server.app, "/get", &[&unknown, victim]).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "none"));
        let reply = send(&server.app, "/set?v=other", &[&unknown, victim]).await;
        assert_eq!(reply.status, 200);
        assert_ne!(reply.cookie(), server.victim);
        assert_ne!(reply.cookie(), unknown);
        assert_eq!(server.probe.writes(), writes + 1, "one create, nothing else");
        server.victim_intact().await;
    }

    /// Cookies of 4 KB, 100 KB and 1 MB are dropped before decoding, without
    /// a store read, and cleared.
    pub(crate) async fn row04<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let victim = id_of(&server.victim).to_owned();
        let padded = format!("{victim}{}", " ".repeat(4096));
        let hostile = cookies(&[
            &"A".repeat(4096),
            &"A".repeat(100 * 1024),
            &"A".repeat(1024 * 1024),
            &format!("{victim}{}", "A".repeat(4096)),
        ]);
        server.served_unread(&hostile).await;
        // Trailing blanks are trimmed before the size check: that is the
        // id itself, which is found.
        assert_eq!(send(&server.app, "/get", &[&format!("id={padded}")]).await.body, "secret");
        // A huge cookie does not hide the real one in another header.
        let mega = format!("id={}", "A".repeat(1024 * 1024));
        assert_eq!(send(&server.app, "/get", &[&mega, &server.victim]).await.body, "secret");
    }

    /// A well-formed id no store knows is never adopted: the stale cookie is
    /// dropped, a write gets a new id, and the unknown one is never created.
    pub(crate) async fn row05<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let unknown = format!("id={}", SessionId::random().expose());
        let (loads, writes) = (server.probe.loads(), server.probe.writes());
        let reply = send(&server.app, "/get", &[&unknown]).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "none"));
        assert_eq!(server.probe.loads(), loads + 1, "one lookup");
        assert_eq!(server.probe.writes(), writes, "a read-only request writes nothing");
        let set = reply.set_cookie().expect("the stale cookie is dropped");
        assert!(set.contains("Max-Age=0"), "{set}");
        assert_eq!(send(&server.app, "/noop", &[&unknown]).await.set_cookie(), None);

        // A write gets a new id; the unknown one never comes into existence.
        let fresh = send(&server.app, "/set?v=x", &[&unknown]).await.cookie();
        assert_ne!(fresh, unknown);
        assert_eq!(server.probe.writes(), writes + 1, "one create");
        assert_eq!(stored_v(&server.other, &unknown).await, None);
        assert_eq!(stored_v(&server.other, &fresh).await.as_deref(), Some("x"));
        server.victim_intact().await;
    }

    /// Ids of the wrong length or alphabet, with blanks, or non-canonical
    /// base64url, are no session and never reach the store.
    pub(crate) async fn row06<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let victim = id_of(&server.victim).to_owned();
        let hostile = cookies(&[
            &victim[..21],
            &victim[..1],
            &format!("{victim}A"),
            &victim.repeat(2),
            &format!("{}+", &victim[..21]),
            &format!("{}/", &victim[..21]),
            &format!("{}=", &victim[..21]),
            &format!("{victim}=="),
            &format!("{} {}", &victim[..10], &victim[11..]),
            &format!("{}\t{}", &victim[..10], &victim[10..]),
            &non_canonical_alias(&victim),
        ]);
        server.served_unread(&hostile).await;
    }

    /// Path-like cookie values (`../../etc/passwd`, `a\b`, `CON`, ...) are no session and never reach the store.
    pub(crate) async fn row07<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        // Some have exactly the length of an id.
        assert_eq!("../../../../etc/passwd".len(), 22);
        let hostile = cookies(&[
            "../../etc/passwd",
            "../../../../etc/passwd",
            "..%2f..%2f..%2fetc%2fpa",
            "..%2F..%2F..%2Fetc%2Fp",
            "a\\b",
            "..\\..\\..\\windows\\win",
            "/etc/passwd",
            "/AAAAAAAAAAAAAAAAAAAAA",
            "NUL",
            "CON",
            "CON.json",
            "~",
            ".",
            "..",
        ]);
        server.served_unread(&hostile).await;
    }

    /// SQL- and Redis-command-shaped cookie values are no session and never reach the store.
    pub(crate) async fn row08<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let hostile = cookies(&[
            "' OR 1=1--",
            "'OR'1'='1'--AAAAAAAAAA",
            "1'; DROP TABLE sessions; --",
            "x' UNION SELECT * FROM sessions--",
            "\\'; DELETE FROM sessions",
            "*",
            "KEYS *",
        ]);
        server.served_unread(&hostile).await;
    }

    /// Stored auth data of the wrong shape, written straight into the store
    /// (as an older app version or a bad migration would): 401, not 500.
    pub(crate) async fn row20<S: LockingStore + Clone>((store, other): Stores<S>) {
        let f = auth_common::fixture(store, auth_common::config());
        let alice = f.users.add("alice", false);
        for (key, wrong) in [
            ("_auth_user_id", serde_json::json!({"nested": [1, 2]})),
            ("_auth_user_id", serde_json::json!(17)),
            ("_auth_user_id", serde_json::json!(null)),
            ("_auth_hash", serde_json::json!(42)),
            ("_auth_hash", serde_json::json!(["not", "hex"])),
        ] {
            let cookie = auth_common::login(&f.app, &alice).await;
            let now = Timestamp::now();
            let mut record = other.load(&key_of(&cookie), now).await.unwrap().expect("logged in");
            record.data.insert_value(key, wrong.clone());
            record.version += 1;
            other.save(&record).await.unwrap();
            for path in ["/me", "/protected", "/admin"] {
                let reply = auth_common::send(&f.app, path, &[&cookie]).await;
                assert_eq!(reply.status, 401, "{key}={wrong} {path}: {}", reply.body);
            }
            let reply = auth_common::send(&f.app, "/maybe", &[&cookie]).await;
            assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "anonymous"));
        }
        // A user id of another type (a `TestUser` session read as `NumericUser`).
        let cookie = auth_common::login(&f.app, &alice).await;
        assert_eq!(auth_common::send(&f.app, "/numeric-me", &[&cookie]).await.status, 401);
    }

    /// A payload over the size limit fails the request (500), writes nothing
    /// and leaves the stored session as it was.
    pub(crate) async fn row21<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config().with_max_payload_bytes(16 * 1024)).await;
        let writes = server.probe.writes();
        let reply = send(&server.app, "/big", &[&server.victim]).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.body);
        assert_eq!(reply.set_cookie(), None);
        assert_eq!(server.probe.writes(), writes, "nothing written");
        server.victim_intact().await;
        // A new session that is too large is refused the same way.
        let reply = send(&server.app, "/big", &[]).await;
        assert_eq!((reply.status.as_u16(), reply.set_cookie()), (500, None));
    }

    /// The store fails before the request, and between the read and the
    /// save of a request: 503, no cookie, and the data is there afterwards.
    pub(crate) async fn row22<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        server.probe.fail(true);
        for path in ["/get", "/set?v=lost", "/incr", "/cycle", "/destroy"] {
            let reply = send(&server.app, path, &[&server.victim]).await;
            assert_eq!(reply.status, 503, "{path}: {}", reply.body);
            assert_eq!(reply.set_cookie(), None, "{path}");
        }
        let reply = send(&server.app, "/set?v=new", &[]).await;
        assert_eq!((reply.status.as_u16(), reply.set_cookie()), (503, None), "no fresh session");
        server.probe.fail(false);
        server.victim_intact().await;

        // Dies during the request: after the handler read the session.
        let probe = server.probe.clone();
        let during = Router::new()
            .route(
                "/read-then-die",
                get(move |session: Session| {
                    let probe = probe.clone();
                    async move {
                        let v: Option<String> = session.get("v").await?;
                        probe.fail(true);
                        session.insert("v", format!("{} and more", v.unwrap_or_default())).await?;
                        Ok::<_, SessionError>("written")
                    }
                }),
            )
            .layer(SessionLayer::new(server.probe.clone()));
        let reply = send(&during, "/read-then-die", &[&server.victim]).await;
        assert_eq!((reply.status.as_u16(), reply.set_cookie()), (503, None));
        server.probe.fail(false);
        server.victim_intact().await;
    }

    /// A lock held by another instance past the wait timeout: 503 and no
    /// cookie; once released, the next locked write goes through.
    pub(crate) async fn row23<S: LockingStore + Clone>(stores: Stores<S>) {
        let wait = LockOptions {
            lease: Duration::from_secs(30),
            wait_timeout: Duration::from_millis(300),
        };
        let server = Server::new(stores, config().with_lock_options(wait)).await;
        // Another process holds the session's lock.
        let held = server
            .other
            .lock(&key_of(&server.victim), LockOptions::default())
            .await
            .expect("lock through the other instance");
        let reply = send(&server.app, "/incr", &[&server.victim]).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.set_cookie(), None);
        held.release().await.expect("release");
        assert_eq!(send(&server.app, "/incr", &[&server.victim]).await.body, "1");
        server.victim_intact().await;
    }

    /// 40 concurrent locked increments over two instances lose no update.
    pub(crate) async fn row25<S: LockingStore + Clone>(stores: Stores<S>) {
        let server = Server::new(stores, config()).await;
        let apps = [server.app.clone(), server.other_app(config())];
        let mut requests = Vec::new();
        for i in 0..40 {
            let app = apps[i % 2].clone();
            let cookie = server.victim.clone();
            requests.push(tokio::spawn(async move { send(&app, "/incr", &[&cookie]).await }));
        }
        for request in requests {
            let reply: Reply = request.await.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        assert_eq!(send(&apps[1], "/incr", &[&server.victim]).await.body, "41");
        server.victim_intact().await;
    }

    /// An id collision on create (forced by a test id generator) never hands
    /// over the existing session; a generator stuck on a taken id fails the request.
    pub(crate) async fn row26<S: LockingStore + Clone>(stores: Stores<S>) {
        let repeated = SessionId::random();
        let server = Server::new(stores, config()).await;
        // One process creates a session under `repeated` ...
        let first_app = app(SessionLayer::new(server.probe.clone())
            .with_config(config().with_id_generator(RepeatingIds::new(repeated, 1)))
            .expect("a valid session config"));
        let first = send(&first_app, "/set?v=first", &[]).await.cookie();
        assert_eq!(first, format!("id={}", repeated.expose()));
        // ... another draws the same id: it gets a fresh one, not the session.
        let second_app =
            server.other_app(config().with_id_generator(RepeatingIds::new(repeated, 1)));
        let reply = send(&second_app, "/set?v=second", &[]).await;
        assert_eq!(reply.status, 200);
        let second = reply.cookie();
        assert_ne!(second, first);
        assert_eq!(stored_v(&server.other, &first).await.as_deref(), Some("first"));
        assert_eq!(stored_v(&server.other, &second).await.as_deref(), Some("second"));
        // A generator stuck on a taken id fails the request; it never hands over.
        let stuck =
            server.other_app(config().with_id_generator(RepeatingIds::new(repeated, usize::MAX)));
        let reply = send(&stuck, "/set?v=stuck", &[]).await;
        assert!(reply.status.is_server_error(), "{}", reply.status);
        assert_eq!(reply.set_cookie(), None);
        assert_eq!(stored_v(&server.other, &first).await.as_deref(), Some("first"));
    }

    /// The user's sessions live on two instances; a password change on one
    /// ends them on both.
    pub(crate) async fn row27<S: LockingStore + Clone>((store, other): Stores<S>) {
        let users = auth_common::TestUsers::default();
        let numeric = auth_common::NumericUsers::default();
        let layer = |store: S| {
            SessionLayer::new(store)
                .with_config(auth_common::config())
                .expect("a valid session config")
        };
        let here = auth_common::app(layer(store), users.clone(), numeric.clone());
        let there = auth_common::app(layer(other), users.clone(), numeric);
        let alice = users.add("alice", false);
        let laptop = auth_common::login(&here, &alice).await;
        let phone = auth_common::login(&there, &alice).await;
        let tablet = auth_common::login(&here, &alice).await;
        assert_eq!(auth_common::send(&there, "/me", &[&tablet]).await.body, "alice");

        let path = format!("/password/{}?pw=changed&relogin=true", alice.id);
        let laptop = auth_common::send(&here, &path, &[&laptop]).await.cookie();
        for app in [&here, &there] {
            assert_eq!(auth_common::send(app, "/me", &[&laptop]).await.body, "alice");
            for cookie in [&phone, &tablet] {
                let reply = auth_common::send(app, "/me", &[cookie]).await;
                assert_eq!(reply.status, 401, "{}", reply.body);
            }
        }
    }

    /// Logout through one instance; the old id is dead through the other.
    pub(crate) async fn row28<S: LockingStore + Clone>((store, other): Stores<S>) {
        let users = auth_common::TestUsers::default();
        let numeric = auth_common::NumericUsers::default();
        let layer = |store: S| {
            SessionLayer::new(store)
                .with_config(auth_common::config())
                .expect("a valid session config")
        };
        let here = auth_common::app(layer(store), users.clone(), numeric.clone());
        let there = auth_common::app(layer(other.clone()), users.clone(), numeric);
        let alice = users.add("alice", false);
        let cookie = auth_common::login(&here, &alice).await;
        auth_common::send(&here, "/set?v=private", &[&cookie]).await;
        assert_eq!(auth_common::send(&there, "/get", &[&cookie]).await.body, "private");

        let reply = auth_common::send(&here, "/logout", &[&cookie]).await;
        assert!(reply.clears_cookie());
        assert!(other.load(&key_of(&cookie), Timestamp::now()).await.unwrap().is_none());
        for app in [&here, &there] {
            assert_eq!(auth_common::send(app, "/me", &[&cookie]).await.status, 401);
            assert_eq!(auth_common::send(app, "/get", &[&cookie]).await.body, "none");
        }
        // Replaying it in a write starts a new session; the old one stays dead.
        let fresh = auth_common::send(&there, "/set?v=new", &[&cookie]).await.cookie();
        assert_ne!(fresh, cookie);
        assert!(other.load(&key_of(&cookie), Timestamp::now()).await.unwrap().is_none());
    }
}

/// One test per row on a server-side store. `$stores` is an
/// `async fn() -> (S, S)`: two instances on one backend.
macro_rules! server_rows {
    ($stores:path) => {
        server_rows!(@each $stores,
            row01_not_base64_empty_or_name_only => row01,
            row02_control_non_ascii_quoted_or_bad_escapes => row02,
            row03_several_cookie_headers => row03,
            row04_oversized_cookies_are_ignored_unread => row04,
            row05_unknown_id_not_adopted => row05,
            row06_short_long_wrong_alphabet_or_spaced_ids => row06,
            row07_path_like_ids => row07,
            row08_sql_shaped_ids => row08,
            row20_stored_user_of_the_wrong_shape_is_401 => row20,
            row21_payload_over_the_limit_keeps_old_data => row21,
            row22_store_down_or_failing_mid_request_is_503 => row22,
            row23_lock_held_elsewhere_is_503_after_the_wait => row23,
            row25_concurrent_locked_writers_lose_nothing => row25,
            row26_id_collision_hands_over_nothing => row26,
            row27_password_change_ends_other_sessions => row27,
            row28_logout_kills_the_id_in_every_process => row28,
        );
    };
    (@each $stores:path, $($name:ident => $row:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::rows::$row($stores().await).await;
        }
    )*};
}

#[cfg(feature = "memory")]
mod memory {
    use session_axum::memory::MemoryStore;

    async fn stores() -> (MemoryStore, MemoryStore) {
        let store = MemoryStore::new();
        (store.clone(), store)
    }

    server_rows!(stores);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use session_axum::sqlite::SqliteStore;

    async fn stores() -> (SqliteStore, SqliteStore) {
        // Two pools on one file; stores on one file share their locks.
        let path = crate::common::scratch_dir().join("sessions.sqlite3");
        (SqliteStore::open(&path).await.unwrap(), SqliteStore::open(&path).await.unwrap())
    }

    server_rows!(stores);
}

#[cfg(feature = "fs")]
mod fs {
    use session_axum::fs::FsStore;

    async fn stores() -> (FsStore, FsStore) {
        let dir = crate::common::scratch_dir().join("sessions");
        (FsStore::new(&dir).unwrap(), FsStore::new(&dir).unwrap())
    }

    server_rows!(stores);
}

#[cfg(feature = "redis")]
mod redis {
    use session_axum::redis::RedisStore;

    use super::*;

    async fn stores() -> (RedisStore, RedisStore) {
        let url = crate::common::service_url("REDIS_URL");
        let prefix = format!("bad-inputs:{}:", crate::common::unique());
        let open = || RedisStore::from_url(&url).unwrap().with_prefix(prefix.clone());
        (open(), open())
    }

    server_rows!(stores);

    /// Row 22 for real: nothing listens where the store points.
    #[tokio::test]
    async fn row22_unreachable_redis_is_503_never_a_fresh_session() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = RedisStore::from_url(&format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .with_connect_timeout(Duration::from_millis(500));
        unreachable_is_503(store).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use session_axum::postgres::{PgPool, PgPoolOptions, PostgresStore};

    use super::*;

    async fn stores() -> (PostgresStore, PostgresStore) {
        let url = crate::common::service_url("DATABASE_URL");
        // One table for every run: each test uses fresh random ids and users.
        let open =
            |pool: PgPool| PostgresStore::new(pool).with_table_name("axum_bad_inputs").unwrap();
        let first = open(PgPool::connect(&url).await.unwrap());
        first.migrate().await.unwrap();
        (first, open(PgPool::connect(&url).await.unwrap()))
    }

    server_rows!(stores);

    /// Row 22 for real: nothing listens where the pool points.
    #[tokio::test]
    async fn row22_unreachable_postgres_is_503_never_a_fresh_session() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/sessions"))
            .unwrap();
        unreachable_is_503(PostgresStore::new(pool)).await;
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use session_axum::mysql::{MySqlPool, MySqlPoolOptions, MySqlStore};

    use super::*;

    async fn stores() -> (MySqlStore, MySqlStore) {
        let url = crate::common::service_url("MYSQL_URL");
        // One table for every run: each test uses fresh random ids and users.
        let open =
            |pool: MySqlPool| MySqlStore::new(pool).with_table_name("axum_bad_inputs").unwrap();
        let first = open(MySqlPool::connect(&url).await.unwrap());
        first.migrate().await.unwrap();
        (first, open(MySqlPool::connect(&url).await.unwrap()))
    }

    server_rows!(stores);

    /// Row 22 for real: nothing listens where the pool points.
    #[tokio::test]
    async fn row22_unreachable_mysql_is_503_never_a_fresh_session() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pool = MySqlPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy(&format!("mysql://root@127.0.0.1:{port}/sessions"))
            .unwrap();
        unreachable_is_503(MySqlStore::new(pool)).await;
    }
}

/// Requests to a store that cannot be reached get the 503, with no cookie:
/// neither a well-formed cookie nor a write turns into a fresh session.
#[cfg(any(feature = "redis", feature = "postgres", feature = "mysql"))]
async fn unreachable_is_503(store: impl LockingStore + Clone) {
    let app = app(SessionLayer::new(store));
    let cookie = format!("id={}", SessionId::random().expose());
    for (path, cookies) in
        [("/get", vec![cookie.as_str()]), ("/set?v=x", vec![cookie.as_str()]), ("/set?v=x", vec![])]
    {
        let reply = send(&app, path, &cookies).await;
        assert_eq!(reply.status, 503, "{path}: {}", reply.body);
        assert_eq!(reply.set_cookie(), None, "{path}");
    }
    assert_eq!(send(&app, "/noop", &[&cookie]).await.status, 200, "no session, no store call");
}

/// Counts `open` calls of the wrapped format.
#[derive(Debug)]
struct Counting<F> {
    inner: F,
    opens: Arc<AtomicUsize>,
}

impl<F: CookieFormat> CookieFormat for Counting<F> {
    fn seal(&self, cookie_name: &str, record: &Record) -> Result<String, Error> {
        self.inner.seal(cookie_name, record)
    }

    fn open(&self, cookie_name: &str, value: &str, now: Timestamp) -> Option<Opened> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.inner.open(cookie_name, value, now)
    }
}

/// The rows that apply to client-side sessions, one `async fn` each.
#[cfg_attr(
    not(any(
        feature = "cookie-aead",
        feature = "cookie-fernet",
        feature = "cookie-jwt",
        feature = "cookie-signed"
    )),
    allow(dead_code)
)]
mod client_rows {
    use super::*;

    /// The test app on `format`, a session holding `v = "secret"`, and the
    /// format's `open` count.
    async fn client(
        format: impl CookieFormat,
        config: SessionConfig,
    ) -> (Router, String, Arc<AtomicUsize>) {
        let opens = Arc::new(AtomicUsize::new(0));
        let format = Counting { inner: format, opens: Arc::clone(&opens) };
        let app = app(SessionLayer::client_side(format)
            .with_config(config)
            .expect("a valid session config"));
        let victim = send(&app, "/set?v=secret", &[]).await.cookie();
        assert_eq!(send(&app, "/get", &[&victim]).await.body, "secret");
        (app, victim, opens)
    }

    /// Each header alone is no session; one that holds a session cookie
    /// (`id=...`) gets it cleared, as for a server-side session.
    async fn served_as_no_session(app: &Router, cookies: &[String]) {
        for cookie in cookies {
            let reply = send(app, "/get", &[cookie]).await;
            assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "none"), "{cookie:.60}");
            match reply.set_cookie() {
                Some(set) => assert!(
                    cookie.starts_with("id=")
                        && set.starts_with("id=;")
                        && set.contains("Max-Age=0"),
                    "{cookie:.60}: {set}"
                ),
                None => assert!(!cookie.starts_with("id="), "{cookie:.60} is not cleared"),
            }
        }
    }

    /// Cookie values that are not base64url (`!!!`, empty, `.`, a bare name) open as no session.
    pub(crate) async fn row01(format: impl CookieFormat) {
        let (app, victim, _) = client(format, config()).await;
        let mut hostile = cookies(&["!!!", "", "====", "*", "a.b.c", ".", "..", "%"]);
        hostile.extend(["id".to_owned(), "id;".to_owned(), ";;;".to_owned()]);
        served_as_no_session(&app, &hostile).await;
        assert_eq!(send(&app, "/get", &[&victim]).await.body, "secret");
    }

    /// Quoted, tab-split, percent-escaped and non-ASCII cookie values open as no session.
    pub(crate) async fn row02(format: impl CookieFormat) {
        let (app, victim, _) = client(format, config()).await;
        let value = victim.strip_prefix("id=").unwrap().to_owned();
        let hostile = cookies(&[
            &format!("\"{value}\""),
            &format!("{}\t{}", &value[..11], &value[12..]),
            &format!("{value}%00"),
            "%ZZ",
        ]);
        served_as_no_session(&app, &hostile).await;
        for raw in [&b"id=\xc3\xa9t\xc3\xa9"[..], b"id=\xff\xfe"] {
            let request = http::Request::get("/get")
                .header(http::header::COOKIE, http::HeaderValue::from_bytes(raw).unwrap())
                .body(axum::body::Body::empty())
                .unwrap();
            let response = tower::ServiceExt::oneshot(app.clone(), request).await.unwrap();
            assert_eq!(response.status(), 200, "{raw:?}");
        }
        assert_eq!(send(&app, "/get", &[&victim]).await.body, "secret");
    }

    /// The real cookie among junk and across several `Cookie` headers opens;
    /// past a few same-named values, no more are tried.
    pub(crate) async fn row03(format: impl CookieFormat) {
        let (app, victim, _) = client(format, config()).await;
        for headers in [
            vec!["id=!!!", "other=1", victim.as_str()],
            vec![victim.as_str(), "id=!!!"],
            vec!["id=a.b.c", "id=%ZZ", "id=", victim.as_str()],
        ] {
            let reply = send(&app, "/get", &headers).await;
            assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "secret"));
        }
        // At most a few same-named values are tried, each a MAC check.
        let many: Vec<String> = (0..50).map(|i| format!("id=junk{i}")).collect();
        let mut headers: Vec<&str> = many.iter().map(String::as_str).collect();
        headers.push(&victim);
        let reply = send(&app, "/get", &headers).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "none"));
    }

    /// Cookies of 4 KB, 100 KB and 1 MB are dropped before any decoding or opening.
    pub(crate) async fn row04(format: impl CookieFormat) {
        let (app, victim, opens) = client(format, config()).await;
        let before = opens.load(Ordering::SeqCst);
        let value = victim.strip_prefix("id=").unwrap().to_owned();
        let hostile = cookies(&[
            &"A".repeat(4096),
            &"A".repeat(100 * 1024),
            &"A".repeat(1024 * 1024),
            &format!("{value}{}", "A".repeat(4096)),
        ]);
        served_as_no_session(&app, &hostile).await;
        assert_eq!(opens.load(Ordering::SeqCst), before, "oversized values are never opened");
        let mega = format!("id={}", "A".repeat(1024 * 1024));
        assert_eq!(send(&app, "/get", &[&mega, &victim]).await.body, "secret");
    }

    /// A sealed user of the wrong shape for `CurrentUser<U>`: 401, not 500.
    pub(crate) async fn row20(format: impl CookieFormat) {
        let users = auth_common::TestUsers::default();
        let layer = SessionLayer::client_side(format)
            .with_config(auth_common::config())
            .expect("a valid session config");
        let app = auth_common::app(layer, users.clone(), auth_common::NumericUsers::default());
        let alice = users.add("alice", false);
        for corrupt in [
            r#"_auth_hash=42"#,
            r#"_auth_hash=null"#,
            r#"_auth_user_id={"nested":[1,2]}"#,
            r#"_auth_user_id=17"#,
        ] {
            let cookie = auth_common::login(&app, &alice).await;
            let path = format!("/corrupt?v={}", auth_common::encode(corrupt));
            let cookie = auth_common::send(&app, &path, &[&cookie]).await.cookie();
            for path in ["/me", "/protected"] {
                let reply = auth_common::send(&app, path, &[&cookie]).await;
                assert_eq!(reply.status, 401, "{corrupt} {path}: {}", reply.body);
            }
        }
        let cookie = auth_common::login(&app, &alice).await;
        assert_eq!(auth_common::send(&app, "/numeric-me", &[&cookie]).await.status, 401);
        assert_eq!(auth_common::send(&app, "/me", &[&cookie]).await.body, "alice");
    }

    /// A session over the payload limit, or sealing over the 4096-byte cookie
    /// limit, fails the request (500) and the old cookie keeps working.
    pub(crate) async fn row21(format: impl CookieFormat) {
        let (app, victim, _) = client(format, config().with_max_payload_bytes(16 * 1024)).await;
        let reply = send(&app, "/big", &[&victim]).await;
        assert_eq!((reply.status.as_u16(), reply.set_cookie()), (500, None));
        assert_eq!(send(&app, "/get", &[&victim]).await.body, "secret", "the old cookie works");
        // Under the payload limit but over the 4096-byte cookie limit.
        let reply = send(&app, &format!("/set?v={}", "x".repeat(4000)), &[&victim]).await;
        assert_eq!((reply.status.as_u16(), reply.set_cookie()), (500, None));
        assert_eq!(send(&app, "/get", &[&victim]).await.body, "secret");
    }

    /// A password change makes the other cookie sessions of the user stop working.
    pub(crate) async fn row27(format: impl CookieFormat) {
        let users = auth_common::TestUsers::default();
        let layer = SessionLayer::client_side(format)
            .with_config(auth_common::config())
            .expect("a valid session config");
        let app = auth_common::app(layer, users.clone(), auth_common::NumericUsers::default());
        let alice = users.add("alice", false);
        let laptop = auth_common::login(&app, &alice).await;
        let phone = auth_common::login(&app, &alice).await;
        assert_eq!(auth_common::send(&app, "/me", &[&phone]).await.body, "alice");
        let path = format!("/password/{}?pw=changed&relogin=true", alice.id);
        let laptop = auth_common::send(&app, &path, &[&laptop]).await.cookie();
        assert_eq!(auth_common::send(&app, "/me", &[&laptop]).await.body, "alice");
        let reply = auth_common::send(&app, "/me", &[&phone]).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }

    /// The documented limit of client-side sessions: logout clears the
    /// browser's cookie, but a copy taken before stays valid until its
    /// deadline (SECURITY.md). Rotating the key is the way to end them all.
    pub(crate) async fn row28(format: impl CookieFormat) {
        let users = auth_common::TestUsers::default();
        let layer = SessionLayer::client_side(format)
            .with_config(auth_common::config())
            .expect("a valid session config");
        let app = auth_common::app(layer, users.clone(), auth_common::NumericUsers::default());
        let alice = users.add("alice", false);
        let cookie = auth_common::login(&app, &alice).await;
        let reply = auth_common::send(&app, "/logout", &[&cookie]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.clears_cookie(), "the browser's copy is cleared");
        let replayed = auth_common::send(&app, "/me", &[&cookie]).await;
        assert_eq!(replayed.body, "alice", "a copied cookie still works: the documented gap");
    }
}

/// One test per applicable row on a cookie format. `$format` is a
/// `fn() -> impl CookieFormat`.
#[cfg_attr(
    not(any(
        feature = "cookie-aead",
        feature = "cookie-fernet",
        feature = "cookie-jwt",
        feature = "cookie-signed"
    )),
    allow(unused_macros)
)]
macro_rules! client_rows {
    ($format:path) => {
        client_rows!(@each $format,
            row01_not_base64_empty_or_name_only => row01,
            row02_control_non_ascii_quoted_or_bad_escapes => row02,
            row03_several_cookie_headers => row03,
            row04_oversized_cookies_are_never_opened => row04,
            row20_stored_user_of_the_wrong_shape_is_401 => row20,
            row21_payload_over_the_limit_keeps_old_cookie => row21,
            row27_password_change_ends_other_sessions => row27,
            row28_logout_cannot_revoke_a_copied_cookie => row28,
        );
    };
    (@each $format:path, $($name:ident => $row:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            $crate::client_rows::$row($format()).await;
        }
    )*};
}

#[cfg(any(
    feature = "cookie-aead",
    feature = "cookie-fernet",
    feature = "cookie-jwt",
    feature = "cookie-signed"
))]
fn keyring() -> session_axum::cookie_store::Keyring {
    use session_axum::cookie_store::{Key, Keyring};
    Keyring::new(Key::generate())
}

#[cfg(feature = "cookie-aead")]
mod aead {
    fn format() -> session_axum::cookie_store::AeadFormat {
        session_axum::cookie_store::AeadFormat::new(crate::keyring())
    }

    client_rows!(format);
}

#[cfg(feature = "cookie-fernet")]
mod fernet {
    fn format() -> session_axum::cookie_store::FernetFormat {
        session_axum::cookie_store::FernetFormat::new(crate::keyring())
    }

    client_rows!(format);
}

#[cfg(feature = "cookie-jwt")]
mod jwt {
    fn format() -> session_axum::cookie_store::JwtFormat {
        session_axum::cookie_store::JwtFormat::hs256(crate::keyring())
    }

    client_rows!(format);
}

#[cfg(feature = "cookie-signed")]
mod signed {
    fn format() -> session_axum::cookie_store::SignedFormat {
        session_axum::cookie_store::SignedFormat::new(crate::keyring())
    }

    client_rows!(format);
}
