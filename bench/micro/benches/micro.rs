//! Micro-benchmarks: what each piece of a session request costs on its own.
//!
//! Run with `cargo xtask bench micro` (or `cargo bench -p bench-micro` in
//! `bench/`). Criterion arguments follow, e.g. `cargo xtask bench micro id`.

#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup, fixed inputs")]

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use session_axum::memory::MemoryStore;
use session_axum::{Session, SessionError, SessionLayer};
use session_core::{
    Codec, CookieFormat, ExpiryPolicy, JsonCodec, LockingStore, SessionData, SessionId,
    SessionStore, Timestamp,
};
use session_stores_cookie::{AeadFormat, FernetFormat, JwtFormat, Key, Keyring, SignedFormat};
use tower::ServiceExt as _;

/// The benchmark's session: a counter.
fn small() -> SessionData {
    let mut data = SessionData::default();
    data.insert("n", 41_u64).unwrap();
    data
}

/// A more typical logged-in session: user id, auth hash, CSRF token, a few prefs.
fn typical() -> SessionData {
    let mut data = SessionData::default();
    data.insert("_auth_user_id", 12_345_u64).unwrap();
    data.insert("_auth_hash", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        .unwrap();
    data.insert("csrf", "c3VwZXJzZWNyZXRjc3JmdG9rZW4").unwrap();
    data.insert("theme", "dark").unwrap();
    data.insert("cart", vec![101_u32, 202, 303]).unwrap();
    data.insert("n", 41_u64).unwrap();
    data
}

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("id");
    group.bench_function("generate", |b| b.iter(SessionId::random));
    let id = SessionId::random();
    let text = id.expose();
    group.bench_function("expose", |b| b.iter(|| black_box(&id).expose()));
    group.bench_function("parse", |b| b.iter(|| black_box(text.as_str()).parse::<SessionId>()));
    group.bench_function("parse_invalid", |b| {
        b.iter(|| black_box("../../etc/passwd%00AAAA").parse::<SessionId>())
    });
    group.bench_function("storage_key_sha256", |b| b.iter(|| black_box(&id).storage_key()));
    group.finish();
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (name, data) in [("small", small()), ("typical", typical())] {
        let bytes = JsonCodec.encode(&data).unwrap();
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| JsonCodec.encode(black_box(&data)))
        });
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| JsonCodec.decode(black_box(&bytes)))
        });
    }
    let data = small();
    group.bench_function("data_get_u64", |b| b.iter(|| black_box(&data).get::<u64>("n")));
    group.bench_function("data_insert_u64", |b| {
        b.iter_batched_ref(small, |d| d.insert("n", 42_u64), criterion::BatchSize::SmallInput)
    });
    group.finish();
}

/// RFC 8410's example Ed25519 private key (PKCS#8 PEM).
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----";

fn cookie_formats(c: &mut Criterion) {
    let keyring = || Keyring::new(Key::from_bytes([7; 32]));
    let formats: [(&str, Box<dyn CookieFormat>); 5] = [
        ("aead", Box::new(AeadFormat::new(keyring()))),
        ("fernet", Box::new(FernetFormat::new(keyring()))),
        ("jwt_hs256", Box::new(JwtFormat::hs256(keyring()))),
        ("jwt_eddsa", Box::new(JwtFormat::ed25519(ED25519_PEM.as_bytes(), &[]).unwrap())),
        ("signed", Box::new(SignedFormat::new(keyring()))),
    ];
    let now = Timestamp::now();
    let mut group = c.benchmark_group("cookie");
    for (data_name, data) in [("small", small()), ("typical", typical())] {
        let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
        record.data = data;
        for (name, format) in &formats {
            let sealed = format.seal("id", &record).unwrap();
            group.bench_function(format!("{name}_seal_{data_name}"), |b| {
                b.iter(|| format.seal("id", black_box(&record)))
            });
            group.bench_function(format!("{name}_open_{data_name}"), |b| {
                b.iter(|| format.open("id", black_box(&sealed), now))
            });
        }
    }
    group.finish();
}

/// axum-extra's `PrivateCookieJar` (AES-256-GCM) sealing and opening the same
/// session data as JSON, beside the cookie formats above: the peer a
/// client-side session is judged against.
fn private_cookie_jar(c: &mut Criterion) {
    use axum::response::IntoResponse;
    use axum_extra::extract::cookie::{Cookie, Key as JarKey, PrivateCookieJar};

    let key = JarKey::from(&[7; 64]);
    let mut group = c.benchmark_group("cookie");
    for (data_name, data) in [("small", small()), ("typical", typical())] {
        let seal = |data: &SessionData| {
            let json = String::from_utf8(JsonCodec.encode(data).unwrap()).unwrap();
            PrivateCookieJar::new(key.clone()).add(Cookie::new("id", json))
        };
        let response = seal(&data).into_response();
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        // axum-extra percent-encodes the value it sends.
        let sealed = Cookie::parse_encoded(set_cookie.to_owned()).unwrap().value().to_owned();
        group.bench_function(format!("private_cookie_jar_seal_{data_name}"), |b| {
            b.iter(|| seal(black_box(&data)))
        });
        let jar = PrivateCookieJar::new(key.clone());
        group.bench_function(format!("private_cookie_jar_open_{data_name}"), |b| {
            b.iter(|| {
                let opened = jar.decrypt(Cookie::new("id", black_box(sealed.clone()))).unwrap();
                JsonCodec.decode(opened.value().as_bytes()).unwrap()
            })
        });
    }
    group.finish();
}

fn memory_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let store = MemoryStore::new();
    let now = Timestamp::now();
    let mut record = ExpiryPolicy::default().new_record(SessionId::random().storage_key(), now);
    record.data = small();
    runtime.block_on(store.create(&record)).unwrap();
    let key = record.key;
    let mut group = c.benchmark_group("memory_store");
    group.bench_function("load", |b| b.to_async(&runtime).iter(|| store.load(&key, now)));
    group.bench_function("save", |b| b.to_async(&runtime).iter(|| store.save(&record)));
    group.bench_function("lock_and_load_then_save_and_release", |b| {
        b.to_async(&runtime).iter(|| async {
            let (guard, loaded) = store.lock_and_load(&key, Default::default(), now).await.unwrap();
            let loaded = loaded.unwrap();
            store.save_and_release(&loaded, guard).await.unwrap();
        })
    });
    group.finish();
}

async fn ours_count(session: Session) -> Result<String, SessionError> {
    let locked = session.lock().await?;
    let n = locked.get::<u64>("n").await?.unwrap_or(0) + 1;
    locked.insert("n", n).await?;
    Ok(n.to_string())
}

async fn tower_count(session: tower_sessions::Session) -> String {
    let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n).await;
    n.to_string()
}

/// One request through the router, no network: what the layers add.
fn request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let call = |app: Router, cookie: Option<String>| {
        let mut request = Request::get("/");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::empty()).unwrap();
        async move { app.oneshot(request).await.unwrap() }
    };
    let first_cookie = |app: &Router| {
        let response = runtime.block_on(call(app.clone(), None));
        let set = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    };

    let bare = Router::new().route("/", get(|| async { "1" }));
    let ours =
        Router::new().route("/", get(ours_count)).layer(SessionLayer::new(MemoryStore::new()));
    let tower = Router::new()
        .route("/", get(tower_count))
        .layer(tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default()));
    let ours_cookie = first_cookie(&ours);
    let tower_cookie = first_cookie(&tower);

    let mut group = c.benchmark_group("request");
    group.bench_function("bare", |b| b.to_async(&runtime).iter(|| call(bare.clone(), None)));
    group.bench_function("ours_memory_lock", |b| {
        b.to_async(&runtime).iter(|| call(ours.clone(), Some(ours_cookie.clone())))
    });
    group.bench_function("tower_sessions_memory", |b| {
        b.to_async(&runtime).iter(|| call(tower.clone(), Some(tower_cookie.clone())))
    });
    group.finish();
}

criterion_group!(benches, ids, codec, cookie_formats, private_cookie_jar, memory_store, request);
criterion_main!(benches);
