//! The token: [`CsrfToken`] makes and keeps it in the session, and the
//! layer compares what a request presents with it.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{CSRF_KEY, FORM_FIELD};
use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::{MissingSessionLayer, SessionError};
use crate::session::Session;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Characters in a token: 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// The `store` of the [`Error::Backend`](session_core::Error::Backend) for a
/// failing OS random number generator.
const RNG_STORE: &str = "random number generator";

/// The session's CSRF token, for the forms of a page: the extractor makes
/// one on first use and keeps it in the session (creating the session if
/// there is none).
///
/// It needs the [`SessionLayer`](crate::SessionLayer) for `K` around the
/// route (not a [`CsrfLayer`](super::CsrfLayer): pages that show forms are usually `GET`s).
///
/// ```
/// use axum::response::Html;
/// use session_axum::csrf::CsrfToken;
///
/// async fn settings(token: CsrfToken) -> Html<String> {
///     Html(format!(
///         r#"<meta name="csrf-token" content="{}">
///            <form method="post" action="/settings">{}<button>Save</button></form>"#,
///         token.as_str(),
///         token.hidden_input(),
///     ))
/// }
/// # let _: axum::Router = axum::Router::new().route("/settings", axum::routing::get(settings));
/// ```
pub struct CsrfToken<K: SessionKind = DefaultSession> {
    token: Arc<str>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> CsrfToken<K> {
    fn new(token: String) -> Self {
        Self { token: token.into(), _kind: PhantomData }
    }

    /// The token of `session`, made and stored if it has none: what the
    /// extractor does, for handlers that need the token after changing the
    /// session, say after a login, which drops the old one.
    ///
    /// ```
    /// use axum::response::Html;
    /// use session_axum::csrf::CsrfToken;
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn change_password(auth: Auth<User>, user: User) -> Result<Html<String>, AuthRejection> {
    ///     auth.login(&user).await?;
    ///     // A token extracted before the login would be refused now.
    ///     let token = CsrfToken::from_session(auth.session()).await?;
    ///     Ok(Html(format!(r#"Saved. <form method="post">{}...</form>"#, token.hidden_input())))
    /// }
    /// # let _ = change_password;
    /// ```
    ///
    /// # Errors
    ///
    /// If the store fails while loading or locking the session, or the OS
    /// random number generator fails (an
    /// [`Error::Backend`](session_core::Error::Backend); 503 by default).
    pub async fn from_session(session: &Session<K>) -> Result<Self, SessionError> {
        if let Some(token) = stored_token(session).await? {
            return Ok(Self::new(token));
        }
        // Two pages of one session made at once would each store a token,
        // the last save winning and the other page's forms failing. Under
        // the lock (which keeps this request's earlier changes) the second
        // request sees the first one's token.
        session.lock_keeping_changes().await?;
        if let Some(token) = stored_token(session).await? {
            return Ok(Self::new(token));
        }
        let token =
            new_token().map_err(|e| session.error(session_core::Error::backend(RNG_STORE, e)))?;
        session.insert(CSRF_KEY, &token).await?;
        Ok(Self::new(token))
    }

    /// The token: 43 characters of base64url, safe in HTML attributes and
    /// headers as it is.
    ///
    /// ```
    /// use session_axum::csrf::CsrfToken;
    ///
    /// fn meta_tag(token: &CsrfToken) -> String {
    ///     format!(r#"<meta name="csrf-token" content="{}">"#, token.as_str())
    /// }
    /// # let _ = meta_tag;
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The hidden form field that carries the token:
    /// `<input type="hidden" name="csrf_token" value="...">`.
    ///
    /// ```
    /// use session_axum::csrf::CsrfToken;
    ///
    /// fn form(token: &CsrfToken) -> String {
    ///     format!(r#"<form method="post">{}<button>Delete</button></form>"#, token.hidden_input())
    /// }
    /// # let _ = form;
    /// ```
    #[must_use]
    pub fn hidden_input(&self) -> String {
        // No escaping needed: only well-formed (base64url) tokens get here.
        format!(r#"<input type="hidden" name="{FORM_FIELD}" value="{}">"#, self.token)
    }
}

impl<K: SessionKind> Clone for CsrfToken<K> {
    fn clone(&self) -> Self {
        Self { token: Arc::clone(&self.token), _kind: PhantomData }
    }
}

impl<K: SessionKind> fmt::Debug for CsrfToken<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: it stays out of debug logs.
        f.debug_struct("CsrfToken").field("kind", &K::NAME).finish_non_exhaustive()
    }
}

impl<S, K> FromRequestParts<S> for CsrfToken<K>
where
    S: Send + Sync,
    K: SessionKind,
{
    type Rejection = CsrfTokenRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = <Session<K> as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(Self::from_session(&session).await?)
    }
}

/// Why the [`CsrfToken`] extractor failed.
///
/// ```
/// use axum::response::{Html, IntoResponse, Response};
/// use session_axum::csrf::{CsrfToken, CsrfTokenRejection};
///
/// async fn page(token: Result<CsrfToken, CsrfTokenRejection>) -> Response {
///     match token {
///         Ok(token) => Html(token.hidden_input()).into_response(),
///         Err(rejection) => rejection.into_response(),
///     }
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(page));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfTokenRejection {
    /// The session store (or the OS random number generator) failed: the
    /// configured error response (503 by default).
    #[error("{0}")]
    Session(#[from] SessionError),
    /// No [`SessionLayer`](crate::SessionLayer) for the session kind: 500.
    #[error("{0}")]
    MissingSessionLayer(#[from] MissingSessionLayer),
}

impl IntoResponse for CsrfTokenRejection {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Session(inner) => inner.into_response(),
            Self::MissingSessionLayer(inner) => inner.into_response(),
        }
    }
}

/// Whether the presented token is the stored one, in time that does not
/// depend on where they differ (the length of a token is no secret).
pub(super) fn tokens_match(stored: &str, presented: &[u8]) -> bool {
    stored.as_bytes().ct_eq(presented).into()
}

/// The session's token, if it holds a well-formed one. Anything else under
/// the key counts as none, and is replaced by the next [`CsrfToken`].
pub(super) async fn stored_token<K: SessionKind>(
    session: &Session<K>,
) -> Result<Option<String>, SessionError> {
    session
        .read(|data| {
            let token = data?.get_value(CSRF_KEY).and_then(Value::as_str)?;
            is_well_formed(token).then(|| token.to_owned())
        })
        .await
}

/// 32 bytes from the OS CSPRNG, in base64url without padding.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` is what [`new_token`] makes: only such tokens are
/// rendered unescaped into HTML.
fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && URL_SAFE_NO_PAD.decode(token).is_ok_and(|bytes| bytes.len() == TOKEN_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), TOKEN_BYTES);
        assert!(is_well_formed(&token));
        assert_ne!(token, new_token().unwrap());
    }

    #[test]
    fn malformed_stored_tokens_are_refused() {
        let token = new_token().unwrap();
        let body = &token[..TOKEN_CHARS - 1];
        for bad in [
            String::new(),
            body.to_owned(),
            format!("{token}A"),
            // The standard alphabet, padding, a quote: not base64url.
            format!("{body}+"),
            format!("{body}="),
            format!("\"{body}"),
            // Right length, but the last character's unused low bits set:
            // not what encoding 32 bytes makes.
            format!("{body}B"),
            "<script>alert(1)</script>AAAAAAAAAAAAAAAAAA".to_owned(),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?}");
        }
    }

    #[test]
    fn the_comparison_needs_every_byte() {
        let token = new_token().unwrap();
        assert!(tokens_match(&token, token.as_bytes()));
        assert!(!tokens_match(&token, b""));
        assert!(!tokens_match(&token, &token.as_bytes()[..TOKEN_CHARS - 1]));
        let mut longer = token.clone().into_bytes();
        longer.push(b'A');
        assert!(!tokens_match(&token, &longer));
        for at in [0, TOKEN_CHARS / 2, TOKEN_CHARS - 1] {
            let mut other = token.clone().into_bytes();
            other[at] = if other[at] == b'A' { b'B' } else { b'A' };
            assert!(!tokens_match(&token, &other), "differs at {at}");
        }
    }
}
