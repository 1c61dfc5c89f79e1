//! Marker types that name a session.

/// Names one kind of session, so an app can run several side by side, each
/// with its own layer, cookie and store: `Session<Cart>` and
/// `Session<Admin>` are different extractors.
///
/// Each kind needs its own [`SessionLayer`](crate::SessionLayer), built
/// with [`SessionLayer::for_kind`](crate::SessionLayer::for_kind); a handler
/// extracting a kind whose layer is missing gets a 500 naming the kind.
///
/// ```
/// use session_axum::SessionKind;
///
/// /// The admin area's session, on its own cookie and store.
/// struct Admin;
///
/// impl SessionKind for Admin {
///     const NAME: &'static str = "admin";
///     const COOKIE_NAME: &'static str = "admin_id";
/// }
/// ```
pub trait SessionKind: Send + Sync + 'static {
    /// A short name for messages and logs.
    const NAME: &'static str;

    /// The cookie name used unless the layer's
    /// [`SessionConfig::with_cookie_name`](crate::SessionConfig::with_cookie_name)
    /// sets another. Defaults to [`NAME`](Self::NAME). Must be an HTTP token.
    const COOKIE_NAME: &'static str = Self::NAME;
}

/// The session kind of a plain [`Session`](crate::Session).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSession;

impl SessionKind for DefaultSession {
    const NAME: &'static str = "default";
    const COOKIE_NAME: &'static str = "id";
}
