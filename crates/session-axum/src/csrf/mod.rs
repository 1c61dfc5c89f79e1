//! CSRF protection for form posts: a per-session token that every unsafe
//! request (`POST`, `PUT`, `PATCH`, `DELETE`: anything but `GET`, `HEAD`,
//! `OPTIONS` and `TRACE`) must send back, and a same-origin check in front
//! of it.
//!
//! - [`CsrfToken`] is the extractor for pages with forms: it gives the
//!   session's token, making one on first use (so visitors who never see a
//!   form get no session for it). Render it with
//!   [`hidden_input`](CsrfToken::hidden_input), or send
//!   [`as_str`](CsrfToken::as_str) in the [`HEADER_NAME`] header from
//!   scripts.
//! - [`CsrfLayer`] is the route layer that checks unsafe requests: first
//!   that the browser does not say they come from another origin
//!   (`Sec-Fetch-Site`, else `Origin` against `Host`), then the token, from
//!   the [`HEADER_NAME`] header or else the [`FORM_FIELD`] field of an
//!   `application/x-www-form-urlencoded` body. The body is handed on
//!   untouched, so the handler's [`Form`](axum::Form) still sees every field.
//!   Safe requests pass unchecked.
//!
//! The token lives under one key of the session ([`CSRF_KEY`]), so it works
//! on every server-side store and in cookie sessions alike. It dies with the
//! session (logout), and [`Auth::login`](crate::Auth::login) drops it, so a
//! token seen before a login (on the login page, or planted by an attacker)
//! is refused after it.
//!
//! A refused request answers 403 through the
//! [`ErrorResponder`]'s
//! [`csrf_rejected`](ErrorResponder::csrf_rejected), and the
//! log says why ([`CsrfReason`]); the client is not told which check failed.
//!
//! ```
//! use axum::response::{Html, Redirect};
//! use axum::routing::get;
//! use axum::{Form, Router};
//! use session_axum::csrf::{CsrfLayer, CsrfToken};
//! use session_axum::{SessionLayer, memory::MemoryStore};
//!
//! async fn comment_form(token: CsrfToken) -> Html<String> {
//!     Html(format!(
//!         r#"<form method="post">{}<textarea name="text"></textarea><button>Send</button></form>"#,
//!         token.hidden_input()
//!     ))
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Comment {
//!     text: String,
//! }
//!
//! // Only reached with the right token: the layer checked it.
//! async fn post_comment(Form(comment): Form<Comment>) -> Redirect {
//!     // ... save comment.text ...
//!     # let _ = comment.text;
//!     Redirect::to("/comments")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/comments", get(comment_form).post(post_comment))
//!     .route_layer(CsrfLayer::new())
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! Multipart (`multipart/form-data`) bodies are not searched for the token:
//! send it in the [`HEADER_NAME`] header with them.

mod form;
mod layer;
mod origin;
mod rejection;
mod token;

use http::HeaderName;

#[cfg(doc)]
use crate::config::ErrorResponder;
pub use layer::{CsrfFuture, CsrfLayer, CsrfService};
pub use rejection::{CsrfReason, CsrfRejection};
pub use token::{CsrfToken, CsrfTokenRejection};

/// The session key the token is kept under, as a string. Do not use it for
/// anything else.
pub const CSRF_KEY: &str = "_csrf";

/// The form field [`CsrfLayer`] reads the token from, and
/// [`CsrfToken::hidden_input`] renders.
pub const FORM_FIELD: &str = "csrf_token";

/// The request header [`CsrfLayer`] reads the token from, before any form
/// field: for scripts (`fetch`) and bodies other than URL-encoded forms.
///
/// ```
/// use session_axum::csrf::HEADER_NAME;
///
/// assert_eq!(HEADER_NAME, "x-csrf-token");
/// ```
pub const HEADER_NAME: HeaderName = HeaderName::from_static("x-csrf-token");

/// How large a URL-encoded form body [`CsrfLayer`] reads by default to find
/// the token in it: 2 MiB, axum's own default body limit.
pub const DEFAULT_MAX_FORM_BYTES: usize = 2 * 1024 * 1024;
