//! [`SessionLayer`]: the configured layer, building a
//! [`SessionService`](crate::service::SessionService) per inner service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use session_core::{CookieFormat, LockingStore};
use tower_layer::Layer;

use crate::config::{ConfigError, SessionConfig, is_token};
use crate::kind::{DefaultSession, SessionKind};
use crate::service::SessionService;
use crate::session::{LayerShared, Mode};

/// Adds a [`Session<K>`](crate::Session) to every request and saves it after the
/// handler.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{Session, SessionConfig, SessionLayer, memory::MemoryStore};
///
/// async fn handler(session: Session) -> String {
///     session.get::<String>("name").await.ok().flatten().unwrap_or_default()
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(SessionLayer::new(MemoryStore::new()).with_config(SessionConfig::default().with_cookie_name("sid")).expect("a valid session config"));
/// ```
pub struct SessionLayer<K: SessionKind = DefaultSession> {
    shared: Arc<LayerShared>,
    _kind: PhantomData<fn() -> K>,
}

impl SessionLayer {
    /// A layer for the default [`Session`](crate::Session), on `store`, with the default
    /// [`SessionConfig`].
    pub fn new(store: impl LockingStore) -> Self {
        Self::from_store(Arc::new(store))
    }

    /// A layer for the default [`Session`](crate::Session) kept entirely in the cookie,
    /// sealed by `format` (Fernet, JWT or signed; see the `cookie-*`
    /// features).
    ///
    /// The same [`Session`](crate::Session) API applies, with the limits of client-side
    /// state: nothing is stored on the server, so [`Session::lock`](crate::Session::lock) cannot
    /// serialize requests (concurrent writes are last-writer-wins), a copied
    /// cookie stays valid until its deadline even after logout, and the
    /// sealed session must fit in a 4096-byte cookie (a larger one fails the
    /// request and the client keeps its previous cookie).
    pub fn client_side(format: impl CookieFormat) -> Self {
        Self::from_format(Arc::new(format))
    }
}

impl<K: SessionKind> SessionLayer<K> {
    /// A layer for `Session<K>` on a store shared with other layers or code.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_axum::{SessionKind, SessionLayer, core::LockingStore, memory::MemoryStore};
    ///
    /// struct Cart;
    /// impl SessionKind for Cart {
    ///     const NAME: &'static str = "cart";
    /// }
    ///
    /// let store: Arc<dyn LockingStore> = Arc::new(MemoryStore::new());
    /// let layer = SessionLayer::<Cart>::from_store(Arc::clone(&store));
    /// assert_eq!(layer.config().cookie_name(), "cart");
    /// ```
    #[must_use]
    pub fn from_store(store: Arc<dyn LockingStore>) -> Self {
        Self::from_mode(Mode::ServerSide(store), SessionConfig::default())
    }

    /// A client-side layer for `Session<K>` (see [`SessionLayer::client_side`]).
    #[must_use]
    pub fn from_format(format: Arc<dyn CookieFormat>) -> Self {
        Self::from_mode(Mode::ClientSide(format), SessionConfig::default())
    }

    fn from_mode(mode: Mode, config: SessionConfig) -> Self {
        const {
            assert!(
                is_token(K::COOKIE_NAME),
                "SessionKind::COOKIE_NAME must be a non-empty HTTP token"
            );
        }
        let shared = LayerShared::new(mode, config.resolved_for(K::COOKIE_NAME));
        Self { shared: Arc::new(shared), _kind: PhantomData }
    }

    fn mode(&self) -> Mode {
        match &self.shared.mode {
            Mode::ServerSide(store) => Mode::ServerSide(Arc::clone(store)),
            Mode::ClientSide(format) => Mode::ClientSide(Arc::clone(format)),
        }
    }

    /// Replaces the configuration, once its cookie attributes are checked
    /// together.
    ///
    /// ```
    /// use session_axum::{SessionConfig, SessionLayer, memory::MemoryStore};
    ///
    /// # fn main() -> Result<(), session_axum::config::ConfigError> {
    /// let layer = SessionLayer::new(MemoryStore::new())
    ///     .with_config(SessionConfig::default().with_cookie_name("sid").with_host_prefix())?;
    /// assert_eq!(layer.config().cookie_name(), "__Host-sid");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for attributes browsers would reject or that
    /// contradict each other: a cookie name that is not an HTTP token, a
    /// `__Host-` cookie that is not `Secure`, has a `Domain` or a path other
    /// than `/`, `SameSite=None` without `Secure`, a malformed path or domain.
    pub fn with_config(self, config: SessionConfig) -> Result<Self, ConfigError> {
        let config = config.resolved_for(K::COOKIE_NAME);
        config.validate()?;
        Ok(Self::from_mode(self.mode(), config))
    }

    /// The same store and configuration for another session kind,
    /// `Session<Other>`. Its cookie is named after `Other` unless the
    /// configuration names one
    /// ([`SessionConfig::with_cookie_name`](crate::SessionConfig::with_cookie_name)):
    /// give each kind its own name then.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use session_axum::{Session, SessionKind, SessionLayer, memory::MemoryStore};
    ///
    /// struct Admin;
    /// impl SessionKind for Admin {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// async fn handler(visitor: Session, admin: Session<Admin>) -> &'static str {
    ///     "two independent sessions, two cookies: `id` and `admin`"
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(handler))
    ///     .layer(SessionLayer::new(MemoryStore::new()))
    ///     .layer(SessionLayer::new(MemoryStore::new()).for_kind::<Admin>());
    /// ```
    #[must_use]
    pub fn for_kind<Other: SessionKind>(self) -> SessionLayer<Other> {
        SessionLayer::from_mode(self.mode(), self.shared.config.clone())
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
}

impl<K: SessionKind> Clone for SessionLayer<K> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), _kind: PhantomData }
    }
}

impl<K: SessionKind> fmt::Debug for SessionLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("kind", &K::NAME)
            .field("mode", &self.shared.mode)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<Inner, K: SessionKind> Layer<Inner> for SessionLayer<K> {
    type Service = SessionService<Inner, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        SessionService::new(inner, Arc::clone(&self.shared))
    }
}
