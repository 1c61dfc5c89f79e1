//! [`SessionConfig`]: cookie attributes, expiry, locking and limits.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use session_core::{Clock, Error, ExpiryPolicy, IdGenerator, LockOptions, RandomIds, SystemClock};

use crate::csrf::CsrfRejection;

/// The cookie's `SameSite` attribute, for [`SessionConfig::with_same_site`].
#[doc(no_inline)]
pub use cookie::SameSite;

/// The largest cookie (name plus value) browsers are required to keep.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// Turns a session failure into the response the client gets.
///
/// Implemented for any `Fn(&Error) -> Response`. The default,
/// [`DefaultErrorResponder`], answers 503 for a store that is down, a lock
/// that timed out or a lost lock ([`Error::is_unavailable`]), and 500
/// otherwise, with a short plain-text body.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use http::StatusCode;
/// use session_axum::SessionConfig;
///
/// let config = SessionConfig::default().with_error_responder(|error: &session_core::Error| -> Response {
///     (StatusCode::SERVICE_UNAVAILABLE, "Please try again in a moment.").into_response()
/// });
/// # let _ = config;
/// ```
///
/// Requests refused by a [`CsrfLayer`](crate::csrf::CsrfLayer) are not
/// failures and never reach [`respond`](Self::respond): they answer
/// [`csrf_rejected`](Self::csrf_rejected), which a closure leaves at its
/// default (a plain 403). A type of your own can give them a page of their
/// own:
///
/// ```
/// use axum::response::{Html, IntoResponse, Response};
/// use http::StatusCode;
/// use session_axum::config::{DefaultErrorResponder, ErrorResponder};
/// use session_axum::csrf::{CsrfReason, CsrfRejection};
/// use session_axum::SessionConfig;
///
/// struct Pages;
///
/// impl ErrorResponder for Pages {
///     fn respond(&self, error: &session_core::Error) -> Response {
///         DefaultErrorResponder.respond(error)
///     }
///
///     fn csrf_rejected(&self, rejection: &CsrfRejection) -> Response {
///         // The reason is in the log; the visitor only needs a way on.
///         let page = Html("<p>This form has expired. <a href=\"\">Reload the page</a>.</p>");
///         (rejection.status(), page).into_response()
///     }
/// }
///
/// let config = SessionConfig::default().with_error_responder(Pages);
/// let refused = Pages.csrf_rejected(&CsrfRejection::new(CsrfReason::WrongToken));
/// assert_eq!(refused.status(), StatusCode::FORBIDDEN);
/// # let _ = config;
/// ```
pub trait ErrorResponder: Send + Sync + 'static {
    /// The response for `error`.
    fn respond(&self, error: &Error) -> Response;

    /// The response for a request a [`CsrfLayer`](crate::csrf::CsrfLayer)
    /// refused. The default is [`CsrfRejection::default_response`]: 403
    /// (413 for a form over the layer's size limit, 400 for a body that
    /// could not be read) with a short plain-text body that does not say
    /// which check failed.
    ///
    /// A store failure while the layer loads the session is not a
    /// rejection: it answers [`respond`](Self::respond), like any other.
    fn csrf_rejected(&self, rejection: &CsrfRejection) -> Response {
        rejection.default_response()
    }
}

impl<F> ErrorResponder for F
where
    F: Fn(&Error) -> Response + Send + Sync + 'static,
{
    fn respond(&self, error: &Error) -> Response {
        self(error)
    }
}

/// 503 for unavailable stores, lock timeouts and lost locks
/// ([`Error::is_unavailable`]), 500 for anything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultErrorResponder;

impl ErrorResponder for DefaultErrorResponder {
    fn respond(&self, error: &Error) -> Response {
        if error.is_unavailable() {
            (StatusCode::SERVICE_UNAVAILABLE, "Session store unavailable; please retry.\n")
                .into_response()
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "Session error.\n").into_response()
        }
    }
}

/// How a [`SessionLayer`](crate::SessionLayer) names, protects and expires
/// its sessions.
///
/// The defaults are the secure choice: cookie `id` with `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `Path=/` and no `Domain`; a 24-hour idle timeout and a
/// 7-day absolute timeout; JSON payloads of at most 64 KiB.
///
/// `Secure` cookies are not sent over plain `http://` except to `localhost`
/// in current browsers; turn it off with [`with_secure`](Self::with_secure)
/// only for local development over another host name.
///
/// ```
/// use std::time::Duration;
/// use session_axum::SessionConfig;
/// use session_core::ExpiryPolicy;
///
/// let config = SessionConfig::default()
///     .with_cookie_name("sid")
///     .with_host_prefix()
///     .with_expiry(ExpiryPolicy::default().with_idle_timeout(Duration::from_secs(30 * 60)));
/// assert_eq!(config.cookie_name(), "__Host-sid");
/// ```
#[derive(Clone)]
pub struct SessionConfig {
    /// The full cookie name: `base_name`, with `__Host-` before it if
    /// `host_prefix`.
    pub(crate) cookie_name: Cow<'static, str>,
    base_name: Cow<'static, str>,
    /// Whether `with_cookie_name` was called; if not, the layer uses its
    /// session kind's [`SessionKind::COOKIE_NAME`](crate::SessionKind::COOKIE_NAME).
    explicit_cookie_name: bool,
    host_prefix: bool,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: Cow<'static, str>,
    pub(crate) domain: Option<Cow<'static, str>>,
    pub(crate) expiry: ExpiryPolicy,
    pub(crate) lock: LockOptions,
    pub(crate) max_payload_bytes: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) error_responder: Arc<dyn ErrorResponder>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: Cow::Borrowed("id"),
            base_name: Cow::Borrowed("id"),
            explicit_cookie_name: false,
            host_prefix: false,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: Cow::Borrowed("/"),
            domain: None,
            expiry: ExpiryPolicy::default(),
            lock: LockOptions::default(),
            max_payload_bytes: 64 * 1024,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            error_responder: Arc::new(DefaultErrorResponder),
        }
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("expiry", &self.expiry)
            .field("lock", &self.lock)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("clock", &self.clock)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

const HOST_PREFIX: &str = "__Host-";

impl SessionConfig {
    /// Sets the cookie name. Without it, a layer for `Session<K>` names its
    /// cookie [`K::COOKIE_NAME`](crate::SessionKind::COOKIE_NAME) (`id` for
    /// the default session), so sessions of different kinds never share one.
    ///
    /// It must be an HTTP token (RFC 6265: no separators, spaces or control
    /// characters); [`SessionLayer::with_config`](crate::SessionLayer::with_config)
    /// refuses the configuration otherwise.
    #[must_use]
    pub fn with_cookie_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.base_name = name.into();
        self.explicit_cookie_name = true;
        self.rename();
        self
    }

    /// The configuration a layer for a session kind named `kind_cookie_name`
    /// runs with: the kind's cookie name unless one was set explicitly.
    pub(crate) fn resolved_for(mut self, kind_cookie_name: &'static str) -> Self {
        if !self.explicit_cookie_name {
            self.base_name = Cow::Borrowed(kind_cookie_name);
            self.rename();
        }
        self
    }

    fn rename(&mut self) {
        self.cookie_name = if self.host_prefix {
            Cow::Owned(format!("{HOST_PREFIX}{}", self.base_name))
        } else {
            self.base_name.clone()
        };
    }

    /// Prefixes the cookie name with `__Host-`, which browsers only accept on
    /// a `Secure` cookie with `Path=/` and no `Domain`: the cookie cannot be
    /// set or overwritten by a sibling subdomain or over plain HTTP. Those
    /// are the defaults; a configuration that also turns `Secure` off, sets
    /// another path or a domain is refused by
    /// [`SessionLayer::with_config`](crate::SessionLayer::with_config),
    /// whatever the order of the calls.
    #[must_use]
    pub fn with_host_prefix(mut self) -> Self {
        self.host_prefix = true;
        self.rename();
        self
    }

    /// Sets the `Secure` attribute (default on). A `__Host-` or
    /// `SameSite=None` cookie must keep it.
    #[must_use]
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the `HttpOnly` attribute (default on: scripts cannot read the id).
    #[must_use]
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets the `SameSite` attribute (default `Lax`).
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets the cookie `Path` (default `/`). It must start with `/` and hold
    /// no `;` or control characters, and be `/` for a `__Host-` cookie.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the cookie `Domain` (default none: only the exact host). It must
    /// hold no `;` or control characters, and a `__Host-` cookie has none.
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<Cow<'static, str>>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the expiry policy (idle and absolute timeouts, touch interval,
    /// browser-session cookies).
    #[must_use]
    pub fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets the lock lease and wait timeout for
    /// [`Session::lock`](crate::Session::lock).
    #[must_use]
    pub fn with_lock_options(mut self, lock: LockOptions) -> Self {
        self.lock = lock;
        self
    }

    /// Sets the largest encoded session payload accepted at save (default
    /// 64 KiB). A larger one fails the request with
    /// [`Error::PayloadTooLarge`] and the stored session keeps its data.
    #[must_use]
    pub fn with_max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// Sets the clock (tests use [`ManualClock`](session_core::ManualClock)).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the id generator (tests force collisions with it).
    #[must_use]
    pub fn with_id_generator(mut self, ids: impl IdGenerator) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// Sets what a failed session operation answers (default
    /// [`DefaultErrorResponder`]).
    #[must_use]
    pub fn with_error_responder(mut self, responder: impl ErrorResponder) -> Self {
        self.error_responder = Arc::new(responder);
        self
    }

    /// The cookie name.
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The expiry policy.
    #[must_use]
    pub fn expiry(&self) -> &ExpiryPolicy {
        &self.expiry
    }
}

impl SessionConfig {
    /// Checks the cookie attributes together, once, so no combination
    /// depends on the order of the setters.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !is_token(&self.base_name) {
            return Err(ConfigError::InvalidCookieName { name: self.base_name.to_string() });
        }
        let path = &self.path;
        if !path.starts_with('/') || path.contains(';') || path.chars().any(char::is_control) {
            return Err(ConfigError::InvalidPath { path: path.to_string() });
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || domain.contains(';') || domain.chars().any(char::is_control))
        {
            return Err(ConfigError::InvalidDomain { domain: domain.to_string() });
        }
        if self.host_prefix {
            if !self.secure {
                return Err(ConfigError::HostPrefixNeedsSecure);
            }
            if path != "/" {
                return Err(ConfigError::HostPrefixNeedsRootPath { path: path.to_string() });
            }
            if let Some(domain) = &self.domain {
                return Err(ConfigError::HostPrefixForbidsDomain { domain: domain.to_string() });
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneNeedsSecure);
        }
        Ok(())
    }
}

/// A [`SessionConfig`] whose cookie attributes cannot work together,
/// returned by [`SessionLayer::with_config`](crate::SessionLayer::with_config).
///
/// ```
/// use session_axum::{SessionConfig, SessionLayer, config::ConfigError, memory::MemoryStore};
///
/// let config = SessionConfig::default().with_host_prefix().with_secure(false);
/// let refused = SessionLayer::new(MemoryStore::new()).with_config(config);
/// assert!(matches!(refused, Err(ConfigError::HostPrefixNeedsSecure)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or not an HTTP token.
    #[error(
        "invalid session cookie name {name:?}: must be a non-empty HTTP token (no spaces, separators or control characters)"
    )]
    InvalidCookieName {
        /// The name as given.
        name: String,
    },
    /// The cookie path does not start with `/`, or holds `;` or control characters.
    #[error(
        "invalid cookie path {path:?}: must start with `/` and hold no `;` or control characters"
    )]
    InvalidPath {
        /// The path as given.
        path: String,
    },
    /// The cookie domain is empty, or holds `;` or control characters.
    #[error(
        "invalid cookie domain {domain:?}: must be non-empty and hold no `;` or control characters"
    )]
    InvalidDomain {
        /// The domain as given.
        domain: String,
    },
    /// `with_host_prefix()` with `with_secure(false)`.
    #[error(
        "a `__Host-` cookie must be `Secure`: drop `with_secure(false)` or `with_host_prefix()`"
    )]
    HostPrefixNeedsSecure,
    /// `with_host_prefix()` with a path other than `/`.
    #[error("a `__Host-` cookie must have `Path=/`, not {path:?}")]
    HostPrefixNeedsRootPath {
        /// The configured path.
        path: String,
    },
    /// `with_host_prefix()` with a domain.
    #[error("a `__Host-` cookie cannot have a `Domain` (configured: {domain:?})")]
    HostPrefixForbidsDomain {
        /// The configured domain.
        domain: String,
    },
    /// `SameSite=None` without `Secure`, which browsers reject.
    #[error("a `SameSite=None` cookie must be `Secure`: browsers refuse it otherwise")]
    SameSiteNoneNeedsSecure,
}

/// RFC 6265 cookie-name: an RFC 7230 token. A `const fn` so a
/// [`SessionKind::COOKIE_NAME`](crate::SessionKind::COOKIE_NAME) is checked
/// when the program is compiled.
pub(crate) const fn is_token(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let separator_free = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if !separator_free {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure() {
        let config = SessionConfig::default();
        assert_eq!(config.cookie_name(), "id");
        assert!(config.secure && config.http_only);
        assert_eq!(config.same_site, SameSite::Lax);
        assert_eq!(config.path, "/");
        assert_eq!(config.domain, None);
    }

    #[test]
    fn host_prefix_sticks_whatever_the_order() {
        let config = SessionConfig::default().with_host_prefix().with_cookie_name("sid");
        assert_eq!(config.cookie_name(), "__Host-sid");
        let config = SessionConfig::default().with_cookie_name("sid").with_host_prefix();
        assert_eq!(config.cookie_name(), "__Host-sid");
        assert_eq!(config.resolved_for("other").cookie_name(), "__Host-sid");
        let config = SessionConfig::default().with_host_prefix().resolved_for("cart");
        assert_eq!(config.cookie_name(), "__Host-cart");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn conflicting_attributes_are_refused_in_either_order() {
        let host = || SessionConfig::default().with_host_prefix();
        let refused = [
            (host().with_secure(false), ConfigError::HostPrefixNeedsSecure),
            (
                SessionConfig::default().with_secure(false).with_host_prefix(),
                ConfigError::HostPrefixNeedsSecure,
            ),
            (
                host().with_path("/app"),
                ConfigError::HostPrefixNeedsRootPath { path: "/app".into() },
            ),
            (
                SessionConfig::default().with_path("/app").with_host_prefix(),
                ConfigError::HostPrefixNeedsRootPath { path: "/app".into() },
            ),
            (
                host().with_domain("example.com"),
                ConfigError::HostPrefixForbidsDomain { domain: "example.com".into() },
            ),
            (
                SessionConfig::default().with_same_site(SameSite::None).with_secure(false),
                ConfigError::SameSiteNoneNeedsSecure,
            ),
        ];
        for (config, expected) in refused {
            assert_eq!(config.validate(), Err(expected));
        }
    }

    #[test]
    fn malformed_attributes_are_refused() {
        let name = SessionConfig::default().with_cookie_name("a b;c").validate();
        assert_eq!(name, Err(ConfigError::InvalidCookieName { name: "a b;c".into() }));
        let empty = SessionConfig::default().with_cookie_name("").validate();
        assert!(matches!(empty, Err(ConfigError::InvalidCookieName { .. })));
        let path = SessionConfig::default().with_path("app;x").validate();
        assert_eq!(path, Err(ConfigError::InvalidPath { path: "app;x".into() }));
        let domain = SessionConfig::default().with_domain("a\nb").validate();
        assert!(matches!(domain, Err(ConfigError::InvalidDomain { .. })));
    }

    #[test]
    fn tokens() {
        assert!(is_token("id") && is_token("__Host-sid") && is_token("a.b~c"));
        assert!(!is_token("") && !is_token("a b") && !is_token("a;b") && !is_token("é"));
    }
}
