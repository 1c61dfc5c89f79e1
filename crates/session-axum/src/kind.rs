//! Marker types that name a session.

/// Names one kind of session, so an app can run several side by side, each
/// with its own layer, cookie and store: `Session<Cart>` and
/// `Session<Admin>` are different extractors.
///
/// ```
/// use session_axum::SessionKind;
///
/// /// The admin area's session, on its own cookie and store.
/// struct Admin;
///
/// impl SessionKind for Admin {
///     const NAME: &'static str = "admin";
/// }
/// ```
pub trait SessionKind: Send + Sync + 'static {
    /// A short name for messages and logs.
    const NAME: &'static str;
}

/// The session kind of a plain [`Session`](crate::Session).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSession;

impl SessionKind for DefaultSession {
    const NAME: &'static str = "default";
}
