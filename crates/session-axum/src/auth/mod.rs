//! Authentication on top of sessions: log users in and out, extract the
//! current user, guard routes.
//!
//! 1. Describe your user with [`AuthUser`] (an id and a
//!    [`session_auth_hash`](AuthUser::session_auth_hash) that changes with
//!    the password) and how to load one with [`UserLoader`].
//! 2. Register the loader with [`AuthLayer`], next to the
//!    [`SessionLayer`](crate::SessionLayer).
//! 3. Log in and out through the [`Auth`] extractor; read the user with
//!    [`CurrentUser`] (or `Option<CurrentUser<U>>`); guard routes with
//!    [`login_required`] and [`permission_required`] as route layers.
//!
//! Both guards name the user type with a turbofish and nothing else:
//! `login_required::<User>()`, `permission_required::<User>(|user| ..)`
//! (and [`permission_required_async::<User>`](permission_required_async)),
//! the closure's parameter type being inferred from it; `for_kind::<K>()`
//! moves either (and [`AuthLayer`]) to another session kind, keeping its
//! configuration.
//!
//! # Errors
//!
//! Everything here fails with one type, [`AuthRejection`], which handlers
//! can `?` (a [`SessionError`](crate::SessionError) converts into it):
//!
//! - nobody logged in: 401, or the login redirect of [`login_required`];
//!   no permission: 403. These are answers, not failures, and are not the
//!   error responder's.
//! - the user loader or the session store failed: the response of the
//!   [`ErrorResponder`](crate::config::ErrorResponder) configured with
//!   [`SessionConfig::with_error_responder`](crate::SessionConfig::with_error_responder)
//!   (503 by default), as for any session failure. A loader failure
//!   reaches it as [`Error::Backend`](crate::core::Error::Backend) with `store`
//!   [`UserLoadFailed::STORE`].
//! - an extractor or guard without its [`AuthLayer`] or
//!   [`SessionLayer`](crate::SessionLayer): 500 with a message naming the
//!   missing layer, logged at error level. `Option<CurrentUser<U>>` too:
//!   it is `None` only when nobody is logged in.
//!
//! ```
//! use std::collections::HashMap;
//! use std::convert::Infallible;
//! use std::sync::{Arc, RwLock};
//!
//! use axum::{Form, Router, response::Redirect, routing::{get, post}};
//! use session_axum::auth::{AuthRejection, safe_next};
//! use session_axum::{
//!     Auth, AuthLayer, AuthUser, CurrentUser, SessionLayer, UserLoader, login_required,
//!     memory::MemoryStore, permission_required,
//! };
//!
//! #[derive(Clone)]
//! struct User {
//!     id: u64,
//!     name: String,
//!     password_hash: String,
//!     is_admin: bool,
//! }
//!
//! impl AuthUser for User {
//!     type Id = u64;
//!     fn id(&self) -> u64 {
//!         self.id
//!     }
//!     fn session_auth_hash(&self) -> &[u8] {
//!         self.password_hash.as_bytes()
//!     }
//! }
//!
//! #[derive(Clone, Default)]
//! struct Users(Arc<RwLock<HashMap<u64, User>>>);
//!
//! impl UserLoader<User> for Users {
//!     type Error = Infallible;
//!     async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
//!         Ok(self.0.read().unwrap().get(id).cloned())
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct LoginForm {
//!     username: String,
//!     password: String,
//!     next: Option<String>,
//! }
//!
//! # fn verify(users: &Users, form: &LoginForm) -> Option<User> { None }
//! async fn login(auth: Auth<User>, Form(form): Form<LoginForm>) -> Result<Redirect, AuthRejection> {
//!     # let users = Users::default();
//!     let Some(user) = verify(&users, &form) else {
//!         return Ok(Redirect::to("/login?failed=1"));
//!     };
//!     auth.login(&user).await?;
//!     Ok(Redirect::to(safe_next(form.next.as_deref().unwrap_or("/"))))
//! }
//!
//! async fn logout(auth: Auth<User>) -> Result<Redirect, AuthRejection> {
//!     auth.logout().await?;
//!     Ok(Redirect::to("/login"))
//! }
//!
//! async fn account(user: CurrentUser<User>) -> String {
//!     format!("Hello, {}", user.name)
//! }
//!
//! let users = Users::default();
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "admin" }))
//!     .route_layer(permission_required::<User>(|user| user.is_admin))
//!     .route("/account", get(account))
//!     .route_layer(login_required::<User>().redirect_to("/login"))
//!     .route("/login", get(|| async { "the form" }).post(login))
//!     .route("/logout", post(logout))
//!     .layer(AuthLayer::new(users))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! A `route_layer` wraps the routes added before it, so above `/admin` needs
//! a login and the admin flag, `/account` a login, and `/login` and
//! `/logout` nothing.
//!
//! # What the session holds
//!
//! A login stores two reserved keys in the session, `_auth_user_id` (the
//! serialized [`AuthUser::Id`]) and `_auth_hash` (a SHA-256 digest of
//! [`AuthUser::session_auth_hash`], never the value itself), and files the
//! session under the id's `Display` form in the store's per-user index.
//! Leave those keys alone. Session data of the wrong shape under them (say,
//! after the id type changed) makes the request anonymous, never a 500.
//!
//! # Password changes
//!
//! Each request compares the stored digest with the user's current
//! `session_auth_hash`, in constant time. After a password change every
//! other session of the user stops authenticating and is deleted on its next
//! request; to keep the session that changed the password, call
//! [`Auth::login`] again in that handler. To end them all at once, use
//! [`Auth::logout_everywhere`].
//!
//! # Cross-site request forgery
//!
//! Session cookies default to `SameSite=Lax`: browsers do not send them on
//! cross-site `POST`s, so another site cannot make a logged-in user's browser
//! log out, change a password or end sessions through a form, as long as
//! those actions are `POST` (never `GET`). `SameSite` does not cover
//! sibling subdomains (they are the same site), nor login CSRF (a forged
//! login *without* a cookie). For those, add
//! [`CsrfLayer`](crate::csrf::CsrfLayer) as a route layer over the forms'
//! routes, login included: it refuses unsafe requests that the browser
//! marks as cross-origin (`Sec-Fetch-Site`, else `Origin` against `Host`),
//! and any without the session's token, which
//! [`CsrfToken`](crate::csrf::CsrfToken) renders into each form.
//! [`Auth::login`] drops the token, so one seen before a login is refused
//! after it. The `login` example puts every route behind it.
//!
//! # Client-side sessions
//!
//! Login, logout, [`CurrentUser`] and the guards work on client-side
//! (cookie) sessions too, but there is no server-side index:
//! [`Auth::sessions`] and [`Auth::logout_everywhere`] fail with
//! [`Error::Unsupported`](crate::core::Error::Unsupported), and a copied cookie
//! stays valid until its deadline or the next password change.

mod context;
mod current_user;
mod guard;
mod handle;
mod layer;
mod login_required;
mod next;
mod permission;
mod rejection;
mod user;

pub use current_user::CurrentUser;
pub use guard::{Guard, GuardFuture};
pub use handle::{Auth, LoginOptions, SessionInfo};
pub use layer::{AuthLayer, AuthService};
pub use login_required::{LoginRequiredLayer, login_required};
pub use next::safe_next;
pub use permission::{
    AsyncPredicate, PermissionLayer, permission_required, permission_required_async,
};
pub use rejection::{AuthRejection, Forbidden, MissingAuthLayer, Unauthenticated, UserLoadFailed};
pub use user::{AuthUser, UserLoader};
