//! A small site with logins on `session-axum`: a login form, a protected
//! account page, a list of my sessions with "log out everywhere", logout and
//! password change. Passwords are hashed with Argon2id. Every form post
//! answers with a redirect (post/redirect/get); what happened ("logged out",
//! "password changed", "wrong password") reaches the next page as a
//! [flash message](session_axum::flash).
//!
//! ```text
//! cargo run -p login                  # SQLite sessions in ./login-sessions.db
//! cargo run -p login -- --store memory
//! cargo run -p login -- --store aead  # the whole session in an AES-256-GCM cookie
//! ```
//!
//! The demo user's name and password are printed on start. The server
//! listens on `http://127.0.0.1:3000` (`PORT` to change).
//!
//! # Cookies and CSRF
//!
//! The session cookie is `HttpOnly` (scripts cannot read it), `Secure`
//! (browsers keep `Secure` cookies on `http://localhost` and
//! `http://127.0.0.1`, so this works without TLS locally) and `SameSite=Lax`.
//!
//! Every state-changing action (login, logout, log out everywhere, password
//! change) is a `POST` form, and every form carries the session's CSRF token
//! ([`session_axum::csrf`]). `SameSite=Lax` already keeps browsers from
//! sending the session cookie with a `POST` from another site; on top of it
//! the [`CsrfLayer`] refuses unsafe requests whose `Sec-Fetch-Site` or
//! `Origin` header says they come from another origin, and then any whose
//! token is missing or wrong. That also stops login CSRF (logging a victim
//! in to the attacker's account, which needs no cookie of the victim's),
//! forged posts from sibling subdomains (which count as the same site), and
//! browsers too old to send `Sec-Fetch-Site`. The token changes at login, so
//! one seen on the login page is worthless afterwards. A refused request
//! gets the site's own 403 page, through [`SiteErrors`].

mod pages;
mod users;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use session_axum::auth::safe_next;
use session_axum::auth::{AuthRejection, LoginOptions};
use session_axum::config::{DefaultErrorResponder, ErrorResponder};
use session_axum::core::{Error, SessionExpiry};
use session_axum::csrf::{CsrfLayer, CsrfRejection, CsrfToken};
use session_axum::flash::{Flash, Level, Message};
use session_axum::{
    Auth, AuthLayer, CurrentUser, Session, SessionConfig, SessionLayer, login_required,
};

pub use argon2::Params as HashParams;
pub use users::{User, UserError, Users, random_password};

/// How long "remember me" keeps a session without use.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// The demo account created on start.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Its user name.
    pub username: String,
    /// Its password, random on every start.
    pub password: String,
}

/// Creates the user `demo` with a random password.
///
/// # Errors
///
/// If the password cannot be hashed or `demo` exists.
pub fn create_demo_user(users: &Users) -> Result<Demo, UserError> {
    let demo = Demo { username: "demo".to_owned(), password: random_password()? };
    users.create(&demo.username, &demo.password)?;
    Ok(demo)
}

/// The session settings: the secure defaults (`Secure`, `HttpOnly`,
/// `SameSite=Lax`, 24 h idle and 7 day absolute timeouts), with the site's
/// own page for refused forms.
#[must_use]
pub fn session_config() -> SessionConfig {
    SessionConfig::default().with_error_responder(SiteErrors)
}

/// The site's error pages: store failures answer as by default (503 or 500,
/// plain text); a form refused by the CSRF check gets a page that says what
/// to do.
#[derive(Debug, Clone, Copy)]
pub struct SiteErrors;

impl ErrorResponder for SiteErrors {
    fn respond(&self, error: &Error) -> Response {
        DefaultErrorResponder.respond(error)
    }

    fn csrf_rejected(&self, rejection: &CsrfRejection) -> Response {
        (rejection.status(), pages::forbidden()).into_response()
    }
}

/// The site, on the given session layer.
pub fn app(users: Users, sessions: SessionLayer) -> Router {
    let protected = Router::new()
        .route("/account", get(account))
        .route("/sessions", get(my_sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/password", get(password_form).post(change_password))
        .route_layer(login_required::<User>().redirect_to("/login"));

    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .merge(protected)
        .route_layer(CsrfLayer::new())
        .layer(AuthLayer::new(users.clone()))
        .layer(sessions)
        .with_state(users)
}

/// A handler's failure, already turned into a response.
type Page = Result<Response, Response>;

fn internal_error(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.\n").into_response()
}

/// Runs slow password hashing off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(work).await.map_err(internal_error)
}

/// The flash messages waiting for this page, taken so a reload shows none.
async fn messages(flash: &Flash) -> Result<Vec<Message>, Response> {
    flash.take().await.map_err(IntoResponse::into_response)
}

/// Adds a flash message and redirects to `to`, for the page there to show it.
async fn redirect_with(flash: &Flash, message: Message, to: &str) -> Page {
    flash.push(message.level, message.content).await.map_err(IntoResponse::into_response)?;
    Ok(Redirect::to(to).into_response())
}

fn success(text: &str) -> Message {
    Message { level: Level::Success, content: text.to_owned() }
}

fn error(text: &str) -> Message {
    Message { level: Level::Error, content: text.to_owned() }
}

/// The CSRF token for the page's forms: the logout button of a logged-in
/// visitor's navigation, or the login form.
async fn csrf(session: &Session) -> Result<CsrfToken, Response> {
    CsrfToken::from_session(session).await.map_err(IntoResponse::into_response)
}

async fn home(user: Option<CurrentUser<User>>, session: Session, flash: Flash) -> Page {
    let messages = messages(&flash).await?;
    let page = match &user {
        // Anonymous visitors see no form here: no token, and no session.
        None => pages::home(None, &messages),
        Some(user) => pages::home(Some((&user.username, &csrf(&session).await?)), &messages),
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(Query(query): Query<LoginQuery>, token: CsrfToken, flash: Flash) -> Page {
    let next = safe_next(query.next.as_deref().unwrap_or("/"));
    Ok(pages::login(next, &token, &messages(&flash).await?).into_response())
}

/// The login form's address, keeping where to go after logging in.
fn login_url(next: &str) -> String {
    if next == "/" {
        return "/login".to_owned();
    }
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/login?next={next}")
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    remember: Option<String>,
    next: Option<String>,
}

async fn login(
    auth: Auth<User>,
    flash: Flash,
    State(users): State<Users>,
    Form(form): Form<LoginForm>,
) -> Page {
    let next = safe_next(form.next.as_deref().unwrap_or("/")).to_owned();
    let LoginForm { username, password, remember, .. } = form;
    let Some(user) = blocking(move || users.verify(&username, &password)).await? else {
        let message = error("Wrong user name or password.");
        return redirect_with(&flash, message, &login_url(&next)).await;
    };
    let mut options = LoginOptions::new();
    if remember.is_some() {
        options = options.remember(SessionExpiry::Persistent {
            idle_timeout: REMEMBER_FOR,
            absolute_timeout: Some(REMEMBER_FOR * 3),
        });
    }
    auth.login_with(&user, options).await.map_err(IntoResponse::into_response)?;
    tracing::info!(user = user.id, "logged in");
    Ok(Redirect::to(&next).into_response())
}

async fn logout(auth: Auth<User>, flash: Flash) -> Page {
    auth.logout().await.map_err(IntoResponse::into_response)?;
    // After the logout: the message goes into a new, anonymous session.
    redirect_with(&flash, success("You have been logged out."), "/login").await
}

async fn account(user: CurrentUser<User>, token: CsrfToken, flash: Flash) -> Page {
    Ok(pages::account((&user.username, &token), &messages(&flash).await?).into_response())
}

/// Whether `rejection` says the store keeps no sessions on the server
/// (client-side cookie sessions), so they cannot be listed or ended there.
fn client_side_only(rejection: &AuthRejection) -> bool {
    matches!(rejection, AuthRejection::Session(error)
        if matches!(error.error(), session_axum::core::Error::Unsupported { .. }))
}

async fn my_sessions(user: CurrentUser<User>, auth: Auth<User>, token: CsrfToken) -> Page {
    let me = (user.username.as_str(), &token);
    match auth.sessions().await {
        Ok(sessions) => Ok(pages::sessions(me, &sessions).into_response()),
        Err(rejection) if client_side_only(&rejection) => {
            Ok(pages::sessions_unavailable(me).into_response())
        }
        Err(rejection) => Err(rejection.into_response()),
    }
}

async fn logout_everywhere(user: CurrentUser<User>, auth: Auth<User>, flash: Flash) -> Page {
    let ended = match auth.logout_everywhere().await {
        Ok(ended) => ended,
        Err(rejection) if client_side_only(&rejection) => {
            let token = csrf(auth.session()).await?;
            return Ok(pages::sessions_unavailable((&user.username, &token)).into_response());
        }
        Err(rejection) => return Err(rejection.into_response()),
    };
    tracing::info!(ended, "logged out everywhere");
    redirect_with(&flash, success("You have been logged out of every session."), "/login").await
}

async fn password_form(user: CurrentUser<User>, token: CsrfToken, flash: Flash) -> Page {
    Ok(pages::password((&user.username, &token), &messages(&flash).await?).into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

async fn change_password(
    user: CurrentUser<User>,
    auth: Auth<User>,
    flash: Flash,
    State(users): State<Users>,
    Form(form): Form<PasswordForm>,
) -> Page {
    let (id, username) = (user.id, user.username.clone());
    let changed = blocking(move || {
        if users.verify(&username, &form.current).is_none() {
            return Ok(None);
        }
        users.set_password(id, &form.new)
    })
    .await?;
    let message = match changed {
        Ok(Some(updated)) => {
            // The new hash ends every session logged in with the old one;
            // logging in again keeps this one. Ending the others now also
            // deletes their data; cookie sessions, with no server-side
            // index, end as each is next used.
            auth.login(&updated).await.map_err(IntoResponse::into_response)?;
            match auth.logout_other_sessions().await {
                Ok(_) => {}
                Err(rejection) if client_side_only(&rejection) => {}
                Err(rejection) => return Err(rejection.into_response()),
            }
            tracing::info!(user = id, "password changed");
            success("Password changed. Your other sessions have been logged out.")
        }
        Ok(None) => error("The current password is wrong."),
        Err(UserError::BadPassword) => error(&UserError::BadPassword.to_string()),
        Err(error) => return Err(internal_error(error)),
    };
    redirect_with(&flash, message, "/password").await
}
