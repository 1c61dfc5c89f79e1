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

/// A form post as crafted by hand: no CSRF token unless `form` has one.
async fn post_raw(
    app: &Router,
    path: &str,
    form: &str,
    cookie: Option<&str>,
    origin: &str,
) -> Reply {
    let mut request = Request::post(path)
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    call(app, request.body(Body::from(form.to_owned())).unwrap()).await
}

/// The CSRF token the site renders into its forms for `cookie`'s session
/// (from the login page, which every visitor can see), and the cookie the
/// browser holds after fetching it.
async fn form_token(app: &Router, cookie: Option<&str>) -> (String, Option<String>) {
    let page = get(app, "/login", cookie).await;
    let (_, rest) = page.body.split_once(r#"name="csrf_token" value=""#).expect("a token");
    let token = rest.split('"').next().unwrap().to_owned();
    (token, page.cookie.or(cookie.map(str::to_owned)))
}

/// A form post as the site's own page sends it: with the session's CSRF
/// token. `cookie` in the reply is the one the browser holds afterwards.
async fn post(app: &Router, path: &str, form: &str, cookie: Option<&str>, origin: &str) -> Reply {
    let (token, cookie) = form_token(app, cookie).await;
    let form = if form.is_empty() {
        format!("csrf_token={token}")
    } else {
        format!("{form}&csrf_token={token}")
    };
    let mut reply = post_raw(app, path, &form, cookie.as_deref(), origin).await;
    reply.cookie = reply.cookie.or(cookie);
    reply
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

/// Follows a post's redirect with its cookie (a new one if it set one), as a
/// browser does: the page it lands on, and the cookie it holds after.
async fn follow(app: &Router, reply: Reply, cookie: Option<&str>) -> (Reply, Option<String>) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let cookie = reply.cookie.or(cookie.map(str::to_owned));
    let location = reply.location.expect("a redirect");
    let page = get(app, &location, cookie.as_deref()).await;
    let cookie = page.cookie.clone().or(cookie);
    (page, cookie)
}

const FLASH_ERROR: &str = r#"<p class="flash error" role="status">"#;
const FLASH_SUCCESS: &str = r#"<p class="flash success" role="status">"#;

#[tokio::test]
async fn wrong_passwords_and_cross_origin_posts_are_refused() {
    let (app, password) = site();
    let form = "username=demo&password=wrong-password&next=%2Fsessions%3Fa%3D1%26b%3D2";
    let reply = post(&app, "/login", form, None, SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login?next=%2Fsessions%3Fa%3D1%26b%3D2"));
    let (page, cookie) = follow(&app, reply, None).await;
    assert!(page.body.contains(&format!("{FLASH_ERROR}Wrong user name or password.</p>")));
    assert!(page.body.contains(r#"name="next" value="/sessions?a=1&amp;b=2""#), "{}", page.body);
    // Shown once: a reload of the form has no message.
    let again = get(&app, "/login", cookie.as_deref()).await;
    assert!(!again.body.contains("Wrong user name"), "{}", again.body);
    // The visitor is still anonymous.
    assert_eq!(get(&app, "/account", cookie.as_deref()).await.status, StatusCode::SEE_OTHER);

    let reply = post(&app, "/login", "username=nobody&password=whatever1", None, SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
    let (page, _) = follow(&app, reply, None).await;
    assert!(page.body.contains("Wrong user name or password."));

    // Login CSRF: a form on another site posting our credentials form, even
    // with a token the attacker fetched for their own session.
    let (token, theirs) = form_token(&app, None).await;
    let form = format!("username=demo&password={password}&csrf_token={token}");
    for origin in ["http://evil.example", "null", "http://127.0.0.1:3001"] {
        let reply = post_raw(&app, "/login", &form, theirs.as_deref(), origin).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(reply.body.contains("This form was refused"), "{}", reply.body);
        assert_eq!(reply.cookie, None);
    }
    let cookie = log_in(&app, &password).await;
    let reply = post_raw(&app, "/logout", "", Some(&cookie), "http://evil.example").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/account", Some(&cookie)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused() {
    let (app, password) = site();
    let credentials = format!("username=demo&password={password}");
    // No token, and a made-up one: refused before the password is checked.
    let (token, visitor) = form_token(&app, None).await;
    for form in [credentials.clone(), format!("{credentials}&csrf_token=forged")] {
        let reply = post_raw(&app, "/login", &form, visitor.as_deref(), SAME).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{form}");
        assert!(reply.body.contains("This form was refused"));
    }
    // The login page's token logs in, and is worthless afterwards.
    let form = format!("{credentials}&csrf_token={token}");
    let reply = post_raw(&app, "/login", &form, visitor.as_deref(), SAME).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let cookie = reply.cookie.expect("logged in on a new id");
    let stale = format!("csrf_token={token}");
    let reply = post_raw(&app, "/logout", &stale, Some(&cookie), SAME).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Another visitor's token does not work for this session either.
    let (other_token, _) = form_token(&app, None).await;
    let reply =
        post_raw(&app, "/logout", &format!("csrf_token={other_token}"), Some(&cookie), SAME).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/account", Some(&cookie)).await.status, StatusCode::OK);
    // The token the pages now show does.
    let (fresh, _) = form_token(&app, Some(&cookie)).await;
    assert_ne!(fresh, token);
    let reply =
        post_raw(&app, "/logout", &format!("csrf_token={fresh}"), Some(&cookie), SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
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
    assert_eq!(reply.location.as_deref(), Some("/password"));
    assert!(reply.cookie.is_some(), "the changing session is kept, under a new id");
    let (page, laptop) = follow(&app, reply, Some(&laptop)).await;
    let laptop = laptop.unwrap();
    assert!(page.body.contains(&format!("{FLASH_SUCCESS}Password changed.")), "{}", page.body);
    assert_eq!(get(&app, "/account", Some(&laptop)).await.status, StatusCode::OK);
    let reply = get(&app, "/account", Some(&phone)).await;
    assert_eq!(reply.location.as_deref(), Some("/login?next=/account"));

    let form = "current=wrong-password&new=another-new-password";
    let reply = post(&app, "/password", form, Some(&laptop), SAME).await;
    let (page, laptop) = follow(&app, reply, Some(&laptop)).await;
    assert!(page.body.contains(&format!("{FLASH_ERROR}The current password is wrong.</p>")));
    let form = "current=a-brand-new-password&new=short";
    let reply = post(&app, "/password", form, laptop.as_deref(), SAME).await;
    let (page, laptop) = follow(&app, reply, laptop.as_deref()).await;
    assert!(page.body.contains(FLASH_ERROR), "{}", page.body);
    // The password did not change: logging in with it still works.
    assert_eq!(get(&app, "/account", laptop.as_deref()).await.status, StatusCode::OK);
    log_in(&app, "a-brand-new-password").await;
}

#[tokio::test]
async fn logout_ends_the_session_and_says_so_once() {
    let (app, password) = site();
    let cookie = log_in(&app, &password).await;
    let reply = post(&app, "/logout", "", Some(&cookie), SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
    let fresh = reply.cookie.clone().expect("a new, anonymous session for the message");
    assert_ne!(fresh, cookie);
    let (page, fresh) = follow(&app, reply, None).await;
    assert!(page.body.contains(&format!("{FLASH_SUCCESS}You have been logged out.</p>")));
    assert!(!get(&app, "/login", fresh.as_deref()).await.body.contains("logged out"));
    assert_eq!(get(&app, "/account", Some(&cookie)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(get(&app, "/account", fresh.as_deref()).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session() {
    let (app, password) = site();
    let one = log_in(&app, &password).await;
    let two = log_in(&app, &password).await;
    let reply = post(&app, "/logout-everywhere", "", Some(&one), SAME).await;
    assert_eq!(reply.location.as_deref(), Some("/login"));
    let (page, _) = follow(&app, reply, None).await;
    assert!(page.body.contains("You have been logged out of every session."), "{}", page.body);
    for cookie in [&one, &two] {
        assert_eq!(get(&app, "/account", Some(cookie)).await.status, StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn client_side_sessions_log_in_and_explain_what_they_cannot_do() {
    use session_axum::cookie_store::{AeadFormat, FernetFormat, Key, Keyring};

    let aead = SessionLayer::client_side(AeadFormat::new(Keyring::new(Key::generate())));
    let fernet = SessionLayer::client_side(FernetFormat::new(Keyring::new(Key::generate())));
    for layer in [aead, fernet] {
        client_side_site(layer).await;
    }
}

/// `--store aead` and `--store fernet`: logging in works; the pages that need
/// a server-side session say why they cannot work.
async fn client_side_site(layer: SessionLayer) {
    let users = Users::with_params(cheap_hashing()).unwrap();
    let demo = create_demo_user(&users).unwrap();
    let app = app(users, layer.with_config(session_config()).expect("a valid session config"));
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
    let (page, _) = follow(&app, reply, Some(&cookie)).await;
    assert!(page.body.contains("You have been logged out."), "{}", page.body);
}
