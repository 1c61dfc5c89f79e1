//! The login example over HTTP, without a browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use login::{HashParams, Users, app, create_demo_user, session_config};
use session_axum::SessionLayer;
use session_axum::memory::MemoryStore;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &header::HeaderValue| value.to_str().unwrap().to_owned())
    };
    let location = header(header::LOCATION);
    let cookie = header(header::SET_COOKIE).map(|set| set.split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, location, cookie, body: String::from_utf8(body.to_vec()).unwrap() }
}

async fn get(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    call(app, request.body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, path: &str, form: &str, cookie: Option<&str>, origin: &str) -> Reply {
    let mut request = Request::post(path)
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    call(app, request.body(Body::from(form.to_owned())).unwrap()).await
}

const SAME: &str = "http://127.0.0.1:3000";

/// Argon2id at 1 MiB and one pass: fast in debug builds. The site's own
/// default is OWASP's 19 MiB, two passes.
fn cheap_hashing() -> HashParams {
    HashParams::new(1024, 1, 1, None).unwrap()
}

fn site() -> (Router, String) {
    let users = Users::with_params(cheap_hashing()).unwrap();
    let demo = create_demo_user(&users).unwrap();
    let layer = SessionLayer::new(MemoryStore::new())
        .with_config(session_config())
        .expect("a valid session config");
    (app(users, layer), demo.password)
}

async fn log_in(app: &Router, password: &str) -> String {
    let reply =
        post(app, "/login", &format!("username=demo&password={password}"), None, SAME).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    reply.cookie.expect("a session cookie")
}

#[tokio::test]
async fn wrong_passwords_and_cross_origin_posts_are_refused() {
    let (app, password) = site();
    let reply = post(&app, "/login", "username=demo&password=wrong-password", None, SAME).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Wrong user name or password."));
    assert_eq!(reply.cookie, None);
    let reply = post(&app, "/login", "username=nobody&password=whatever1", None, SAME).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // Login CSRF: a form on another site posting our credentials form.
    let form = format!("username=demo&password={password}");
    for origin in ["http://evil.example", "null", "http://127.0.0.1:3001"] {
        let reply = post(&app, "/login", &form, None, origin).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(reply.cookie, None);
    }
    let cookie = log_in(&app, &password).await;
    let reply = post(&app, "/logout", "", Some(&cookie), "http://evil.example").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/account", Some(&cookie)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn login_returns_to_next_but_never_off_site() {
    let (app, password) = site();
    let reply = get(&app, "/sessions", None).await;
    assert_eq!(reply.location.as_deref(), Some("/login?next=/sessions"));
    let form = format!("username=demo&password={password}&next=%2Fsessions");
    let reply = post(&app, "/login", &form, None, SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/sessions"));
    let form = format!("username=demo&password={password}&next=%2F%2Fevil.example");
    let reply = post(&app, "/login", &form, None, SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/"));
    // The form never echoes an unsafe `next` either.
    let reply = get(&app, "/login?next=https://evil.example", None).await;
    assert!(!reply.body.contains("evil"), "{}", reply.body);
}

#[tokio::test]
async fn a_password_change_logs_out_the_other_sessions() {
    let (app, password) = site();
    let laptop = log_in(&app, &password).await;
    let phone = log_in(&app, &password).await;
    let reply = get(&app, "/sessions", Some(&laptop)).await;
    assert!(reply.body.contains("2 active session(s)"), "{}", reply.body);

    let form = format!("current={password}&new=a-brand-new-password");
    let reply = post(&app, "/password", &form, Some(&laptop), SAME).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("Password changed"));
    let laptop = reply.cookie.expect("the changing session is kept, under a new id");
    assert_eq!(get(&app, "/account", Some(&laptop)).await.status, StatusCode::OK);
    let reply = get(&app, "/account", Some(&phone)).await;
    assert_eq!(reply.location.as_deref(), Some("/login?next=/account"));

    let form = "current=wrong-password&new=another-new-password";
    let reply = post(&app, "/password", form, Some(&laptop), SAME).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session() {
    let (app, password) = site();
    let one = log_in(&app, &password).await;
    let two = log_in(&app, &password).await;
    let reply = post(&app, "/logout-everywhere", "", Some(&one), SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login?notice=logged-out-everywhere"));
    for cookie in [&one, &two] {
        assert_eq!(get(&app, "/account", Some(cookie)).await.status, StatusCode::SEE_OTHER);
    }
    let reply = get(&app, "/login?notice=logged-out-everywhere", None).await;
    assert!(reply.body.contains("logged out of every session"));
}

#[tokio::test]
async fn client_side_sessions_log_in_and_explain_what_they_cannot_do() {
    use session_axum::cookie_store::{FernetFormat, Key, Keyring};

    let users = Users::with_params(cheap_hashing()).unwrap();
    let demo = create_demo_user(&users).unwrap();
    let format = FernetFormat::new(Keyring::new(Key::generate()));
    let app = app(
        users,
        SessionLayer::client_side(format)
            .with_config(session_config())
            .expect("a valid session config"),
    );
    let cookie = log_in(&app, &demo.password).await;
    assert_eq!(get(&app, "/account", Some(&cookie)).await.status, StatusCode::OK);
    for reply in [
        get(&app, "/sessions", Some(&cookie)).await,
        post(&app, "/logout-everywhere", "", Some(&cookie), SAME).await,
    ] {
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.contains("id=\"client-side\""), "{}", reply.body);
    }
    let reply = post(&app, "/logout", "", Some(&cookie), SAME).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}
