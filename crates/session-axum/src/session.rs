//! [`Session`]: the per-request session handle.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::{
    CookieFormat, Error, LockGuard, LockingStore, Record, Reloaded, SessionData, SessionExpiry,
    SessionId, StorageKey,
};
use tokio::sync::Mutex;

use crate::config::SessionConfig;
use crate::cookie::CookieTemplate;
use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::SessionError;

/// Where a layer keeps its sessions.
pub(crate) enum Mode {
    /// The cookie holds an id; the session lives in the store.
    ServerSide(Arc<dyn LockingStore>),
    /// The cookie holds the whole session, sealed by the format; nothing is
    /// kept on the server.
    ClientSide(Arc<dyn CookieFormat>),
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServerSide(store) => f.debug_tuple("ServerSide").field(store).finish(),
            Self::ClientSide(_) => f.write_str("ClientSide"),
        }
    }
}

/// What every request of one [`SessionLayer`](crate::SessionLayer) shares.
pub(crate) struct LayerShared {
    pub(crate) mode: Mode,
    pub(crate) config: SessionConfig,
    /// `config`'s cookie attributes, rendered once.
    pub(crate) cookies: CookieTemplate,
}

impl LayerShared {
    pub(crate) fn new(mode: Mode, config: SessionConfig) -> Self {
        let cookies = CookieTemplate::new(&config);
        Self { mode, config, cookies }
    }

    /// The server-side store, or [`Error::Unsupported`] for client-side
    /// sessions, which keep nothing on the server to ask.
    pub(crate) fn store(&self, operation: &'static str) -> Result<&dyn LockingStore, Error> {
        match &self.mode {
            // Through the trait object: calling on the `Arc` itself would go
            // through `Arc<S>`'s forwarding impl, a second boxed future per call.
            Mode::ServerSide(store) => Ok(store.as_ref()),
            Mode::ClientSide(_) => {
                Err(Error::Unsupported { store: "client-side cookie", operation })
            }
        }
    }

    pub(crate) fn is_client_side(&self) -> bool {
        matches!(self.mode, Mode::ClientSide(_))
    }
}

/// What the request's session cookie carried.
pub(crate) enum Incoming {
    /// No usable session cookie.
    Nothing,
    /// A well-formed server-side session id, not yet known to exist.
    Id(SessionId),
    /// Session cookies, none of them a well-formed id (server-side) or a
    /// value worth opening (client-side: empty or oversized): cleared like
    /// an unknown id once the session is used, without a store call.
    Malformed,
    /// Sealed client-side session values, not yet opened; the first that
    /// opens is the session.
    Sealed(Vec<String>),
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("Nothing"),
            Self::Id(id) => f.debug_tuple("Id").field(id).finish(),
            Self::Malformed => f.write_str("Malformed"),
            Self::Sealed(values) => write!(f, "Sealed({} values)", values.len()),
        }
    }
}

/// The session of the current request.
///
/// Extract it in a handler (it needs a [`SessionLayer`](crate::SessionLayer)
/// around the route). It is loaded lazily: a handler that never calls it
/// costs no store call, and no cookie is sent for a session that was never
/// written. Changes are saved by the layer after the handler returns, and
/// only if there were changes (or the idle deadline is due a refresh).
///
/// Plain [`get`](Self::get) / [`insert`](Self::insert) are
/// last-writer-wins between concurrent requests of the same session. For
/// read-modify-write, take [`lock`](Self::lock) first.
///
/// Unknown, expired and malformed session ids are never adopted: the request
/// is served as having no session, a new id is issued only if the handler
/// writes, and otherwise a request that used the session clears the cookie.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{Session, SessionError, SessionLayer, memory::MemoryStore};
///
/// async fn visits(session: Session) -> Result<String, SessionError> {
///     let locked = session.lock().await?;
///     let n = locked.get::<u64>("visits").await?.unwrap_or(0) + 1;
///     locked.insert("visits", n).await?;
///     Ok(n.to_string())
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
pub struct Session<K: SessionKind = DefaultSession> {
    pub(crate) inner: Arc<SessionInner>,
    _kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> Clone for Session<K> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), _kind: PhantomData }
    }
}

impl<K: SessionKind> std::fmt::Debug for Session<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("kind", &K::NAME)
            .field("incoming", &self.inner.incoming)
            .finish_non_exhaustive()
    }
}

pub(crate) struct SessionInner {
    pub(crate) layer: Arc<LayerShared>,
    incoming: Incoming,
    pub(crate) state: Mutex<State>,
}

/// Everything the handler did to the session, applied by the layer after it.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) session: Loaded,
    /// Keys to delete after the handler: cycled-away and destroyed sessions.
    pub(crate) stale: Vec<StorageKey>,
    /// The client holds a cookie we want gone (unknown id, destroyed session).
    pub(crate) clear_cookie: bool,
    /// Set when deadlines or the user changed without a data change.
    pub(crate) meta_changed: bool,
    /// The store lock, when the handler called [`Session::lock`].
    pub(crate) lock: Option<LockGuard>,
}

/// The request's session, as far as this request knows it.
#[derive(Default)]
pub(crate) enum Loaded {
    /// Not looked up yet: nothing asked for it.
    #[default]
    Unloaded,
    /// Looked up, and there is none: no cookie, an unknown or expired id, or
    /// destroyed in this request.
    Absent,
    /// In the store (or, client-side, in the request's cookie).
    Existing(Live),
    /// Created in this request (or moved to a new id): not in the store yet;
    /// the layer creates it after the handler.
    New(Live),
}

pub(crate) struct Live {
    /// The session id; `None` for client-side sessions, which have none.
    pub(crate) id: Option<SessionId>,
    pub(crate) record: Record,
}

impl Loaded {
    pub(crate) fn is_loaded(&self) -> bool {
        !matches!(self, Self::Unloaded)
    }

    pub(crate) fn live(&self) -> Option<&Live> {
        match self {
            Self::Existing(live) | Self::New(live) => Some(live),
            Self::Unloaded | Self::Absent => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut Live> {
        match self {
            Self::Existing(live) | Self::New(live) => Some(live),
            Self::Unloaded | Self::Absent => None,
        }
    }
}

impl<K: SessionKind> Session<K> {
    pub(crate) fn new(layer: Arc<LayerShared>, incoming: Incoming) -> Self {
        let inner = SessionInner { layer, incoming, state: Mutex::new(State::default()) };
        Self { inner: Arc::new(inner), _kind: PhantomData }
    }

    pub(crate) fn error(&self, error: Error) -> SessionError {
        SessionError::new(error, Arc::clone(&self.inner.layer.config.error_responder))
    }

    /// Runs `action` on the request's session state once it is loaded: the
    /// one place the state is locked, loaded and failures turned into
    /// [`SessionError`].
    async fn with_loaded<R>(
        &self,
        action: impl FnOnce(&mut State) -> Result<R, Error>,
    ) -> Result<R, SessionError> {
        let mut state = self.inner.state.lock().await;
        let loaded = match self.inner.ensure_loaded(&mut state).await {
            Ok(()) => action(&mut state),
            Err(error) => Err(error),
        };
        loaded.map_err(|e| self.error(e))
    }

    /// Like [`with_loaded`](Self::with_loaded), on the live session,
    /// creating one if there is none.
    async fn with_live<R>(
        &self,
        action: impl FnOnce(&mut Live, &mut bool) -> Result<R, Error>,
    ) -> Result<R, SessionError> {
        let layer = &self.inner.layer;
        self.with_loaded(|state| {
            let live = layer.live_or_new(&mut state.session);
            action(live, &mut state.meta_changed)
        })
        .await
    }

    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// If the store fails, or the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.with_loaded(|state| match state.session.live() {
            Some(live) => live.record.data.get(key),
            None => Ok(None),
        })
        .await
    }

    /// Stores `value` under `key`, creating the session if there is none.
    ///
    /// # Errors
    ///
    /// If the store fails while loading, or `value` cannot be represented as
    /// JSON.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|e| self.error(e.into()))?;
        self.with_live(|live, _| {
            live.record.data.insert_value(key, value);
            Ok(())
        })
        .await
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    ///
    /// If the store fails, or the removed value is not a `T` (it is removed
    /// all the same).
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.with_loaded(|state| {
            let removed = state.session.live_mut().and_then(|live| live.record.data.remove(key));
            removed.map(|value| T::deserialize(value).map_err(Error::from)).transpose()
        })
        .await
    }

    /// Removes every key. The session (and its id) stays.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.with_loaded(|state| {
            if let Some(live) = state.session.live_mut() {
                live.record.data.clear();
            }
            Ok(())
        })
        .await
    }

    /// Whether the session holds no data (or does not exist).
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        self.with_loaded(|state| {
            Ok(state.session.live().is_none_or(|live| live.record.data.is_empty()))
        })
        .await
    }

    /// Moves the session to a new id, keeping its data. The old id stops
    /// working once the response is sent. Call this whenever privileges
    /// change (login), against session fixation.
    ///
    /// Server-side, the move takes the session's lock (as [`lock`](Self::lock)
    /// does) and holds it until the response is ready, so a concurrent locked
    /// request on the old id either runs before the move, and its write moves
    /// with the data, or after it, and finds no session. Changes made before
    /// `cycle_id` are kept, unless another request wrote the session between
    /// this request's read and the lock: then the newer data wins.
    ///
    /// # Errors
    ///
    /// If the store fails while loading, or [`Error::LockTimeout`].
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let layer = &self.inner.layer;
        self.lock_keeping_changes().await?;
        self.with_loaded(|state| {
            if layer.is_client_side() {
                // A client-side session has no id; resealing it issues a new value.
                state.meta_changed |= state.session.live().is_some();
                return Ok(());
            }
            let mut live = match std::mem::take(&mut state.session) {
                Loaded::Existing(live) => {
                    state.stale.push(live.record.key);
                    live
                }
                Loaded::New(live) => live,
                nothing => {
                    state.session = nothing;
                    return Ok(());
                }
            };
            let fresh = layer.config.ids.generate();
            live.id = Some(fresh);
            live.record.key = fresh.storage_key();
            state.session = Loaded::New(live);
            Ok(())
        })
        .await
    }

    /// Ends the session: it is deleted from the store and the cookie is
    /// cleared when the response is sent. Writing to the session afterwards
    /// in the same request starts a new one.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let had_cookie = !matches!(self.inner.incoming, Incoming::Nothing);
        self.with_loaded(|state| {
            if let Loaded::Existing(live) = std::mem::replace(&mut state.session, Loaded::Absent) {
                state.stale.push(live.record.key);
            }
            state.clear_cookie |= had_cookie;
            Ok(())
        })
        .await
    }

    /// Gives this session its own expiry (for example "remember me"),
    /// creating the session if there is none.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn set_expiry(&self, expiry: SessionExpiry) -> Result<(), SessionError> {
        let config = &self.inner.layer.config;
        self.with_live(|live, meta_changed| {
            config.expiry.apply(&mut live.record, expiry, config.clock.now());
            *meta_changed = true;
            Ok(())
        })
        .await
    }

    /// Takes the store's lock on this session and reloads it, for
    /// read-modify-write without lost updates.
    ///
    /// The lock is held until the response is ready: the layer saves the
    /// session and then releases the lock, so concurrent requests that each
    /// `lock()`, read, and write see each other's writes, in this process and,
    /// with a shared store such as Redis or Postgres, across processes. Call
    /// it before reading: changes made before `lock()` are discarded by the
    /// reload. Calling it again in the same request is a no-op.
    ///
    /// A session that does not exist yet needs no lock: nobody else can know
    /// its id.
    ///
    /// # Errors
    ///
    /// [`Error::LockTimeout`] after the configured wait, or a store failure:
    /// both turn into the configured error response (503 by default).
    pub async fn lock(&self) -> Result<LockedSession<K>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.lock(&mut state, PendingChanges::Discard).await.map_err(|e| self.error(e))?;
        Ok(LockedSession { session: self.clone() })
    }
}

/// Hooks for the auth layer, flash messages and CSRF tokens, which build on
/// the session.
impl<K: SessionKind> Session<K> {
    /// Takes the session's lock, as [`lock`](Self::lock) does, keeping the
    /// changes this request made before it unless another request wrote the
    /// session meanwhile (then the newer data wins): for writes of the
    /// crate's own that must not lose a concurrent request's (a move to a
    /// new id, a flash message).
    pub(crate) async fn lock_keeping_changes(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.lock(&mut state, PendingChanges::Keep).await.map_err(|e| self.error(e))
    }

    /// The user this session is indexed under ([`Record::user`]).
    pub(crate) async fn user(&self) -> Result<Option<String>, SessionError> {
        self.with_loaded(|state| Ok(state.session.live().and_then(|live| live.record.user.clone())))
            .await
    }

    /// Runs `read` on the session's data (`None`: no session), loading it
    /// first if needed.
    pub(crate) async fn read<R>(
        &self,
        read: impl FnOnce(Option<&SessionData>) -> R,
    ) -> Result<R, SessionError> {
        self.with_loaded(|state| Ok(read(state.session.live().map(|live| &live.record.data)))).await
    }

    /// Indexes the session under `user` (creating the session if needed), or
    /// removes it from the index with `None`.
    pub(crate) async fn set_user(&self, user: Option<String>) -> Result<(), SessionError> {
        self.with_live(|live, meta_changed| {
            if live.record.user != user {
                live.record.user = user;
                *meta_changed = true;
            }
            Ok(())
        })
        .await
    }

    /// The storage key of the live session, if it exists in the store.
    pub(crate) async fn storage_key(&self) -> Result<Option<StorageKey>, SessionError> {
        self.with_loaded(|state| match &state.session {
            Loaded::Existing(live) => Ok(Some(live.record.key)),
            _ => Ok(None),
        })
        .await
    }

    /// The server-side store behind this session; client-side sessions
    /// answer [`Error::Unsupported`] naming `operation`.
    pub(crate) fn store(&self, operation: &'static str) -> Result<&dyn LockingStore, SessionError> {
        self.inner.layer.store(operation).map_err(|e| self.error(e))
    }

    /// The layer's configuration.
    pub(crate) fn config(&self) -> &SessionConfig {
        &self.inner.layer.config
    }
}

/// A [`Session`] whose store lock this request holds until its response is
/// ready (see [`Session::lock`]). Use it like the session itself.
#[must_use = "the lock exists to read and write the session under it"]
#[derive(Debug)]
pub struct LockedSession<K: SessionKind = DefaultSession> {
    session: Session<K>,
}

impl<K: SessionKind> Deref for LockedSession<K> {
    type Target = Session<K>;

    fn deref(&self) -> &Session<K> {
        &self.session
    }
}

impl LayerShared {
    /// The live session, created (with a fresh id, server-side) if there is
    /// none. `session` must be loaded.
    fn live_or_new<'s>(&self, session: &'s mut Loaded) -> &'s mut Live {
        if session.live().is_none() {
            let config = &self.config;
            let now = config.clock.now();
            *session = Loaded::New(match self.mode {
                Mode::ServerSide(_) => {
                    let id = config.ids.generate();
                    Live { id: Some(id), record: config.expiry.new_record(id.storage_key(), now) }
                }
                // No id and no store key: the cookie is the session.
                Mode::ClientSide(_) => Live {
                    id: None,
                    record: config.expiry.new_record(StorageKey::from_bytes([0; 32]), now),
                },
            });
        }
        match session {
            Loaded::Existing(live) | Loaded::New(live) => live,
            // Just made live above.
            Loaded::Unloaded | Loaded::Absent => unreachable!("a session was just created"),
        }
    }
}

/// What taking the lock does with changes this request made before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingChanges {
    /// Reload, dropping them: [`Session::lock`]'s documented behaviour, so
    /// a read-modify-write always starts from the stored data.
    Discard,
    /// Keep them if nobody wrote the session meanwhile (`cycle_id`).
    Keep,
}

impl SessionInner {
    /// Whether the handler never used the session, so there is nothing to
    /// save and nothing to tell the client. A session still in use
    /// elsewhere (its state locked) counts as used.
    pub(crate) fn is_untouched(&self) -> bool {
        self.state.try_lock().is_ok_and(|state| {
            !state.session.is_loaded()
                && state.lock.is_none()
                && state.stale.is_empty()
                && !state.clear_cookie
        })
    }

    async fn ensure_loaded(&self, state: &mut State) -> Result<(), Error> {
        if state.session.is_loaded() {
            return Ok(());
        }
        let config = &self.layer.config;
        state.session = match (&self.incoming, &self.layer.mode) {
            (Incoming::Id(id), Mode::ServerSide(store)) => {
                let now = config.clock.now();
                match store.as_ref().load(&id.storage_key(), now).await? {
                    Some(record) if !record.is_expired(now) => {
                        Loaded::Existing(Live { id: Some(*id), record })
                    }
                    _ => {
                        tracing::debug!(session = %id, "unknown or expired session id; not adopted");
                        state.clear_cookie = true;
                        Loaded::Absent
                    }
                }
            }
            (Incoming::Sealed(values), Mode::ClientSide(format)) => {
                let now = config.clock.now();
                match values.iter().find_map(|value| format.open(&config.cookie_name, value, now)) {
                    Some(opened) => {
                        // Opened with a fallback key: reissue under the primary.
                        state.meta_changed |= opened.needs_reseal;
                        Loaded::Existing(Live { id: None, record: opened.record })
                    }
                    None => {
                        tracing::debug!("invalid or expired session cookie ignored");
                        state.clear_cookie = true;
                        Loaded::Absent
                    }
                }
            }
            (Incoming::Malformed, _) => {
                state.clear_cookie = true;
                Loaded::Absent
            }
            // No cookie (the layer only reads ids server-side and sealed
            // values client-side).
            _ => Loaded::Absent,
        };
        Ok(())
    }

    async fn lock(&self, state: &mut State, pending: PendingChanges) -> Result<(), Error> {
        if state.lock.is_some() {
            return Ok(());
        }
        let Mode::ServerSide(store) = &self.layer.mode else {
            // Client-side state has no server to lock: last writer wins.
            return self.ensure_loaded(state).await;
        };
        // What is locked, and the version this request already holds if its
        // copy is to be kept (unmodified, say loaded by `CurrentUser`, or
        // modified by a caller that keeps its changes): then the store only
        // has to say whether it changed.
        // The loaded record's key saves hashing the id a second time.
        let (id, key, held_version, modified) = match (&state.session, &self.incoming) {
            (Loaded::Unloaded, Incoming::Id(id)) => (*id, id.storage_key(), None, false),
            (Loaded::Existing(Live { id: Some(id), record }), _) => {
                let modified = record.data.is_changed() || state.meta_changed;
                if modified && pending == PendingChanges::Discard {
                    tracing::warn!(session = %id, "changes made before Session::lock() were discarded by its reload");
                    (*id, record.key, None, false)
                } else {
                    (*id, record.key, Some(record.version), modified)
                }
            }
            // Nothing to lock: no session, or one nobody else can know yet.
            _ => return self.ensure_loaded(state).await,
        };
        let config = &self.layer.config;
        let now = config.clock.now();
        let store = store.as_ref();
        let (guard, reloaded) = match held_version {
            Some(version) => store.lock_and_reload(&key, config.lock, now, version).await?,
            None => {
                let (guard, record) = store.lock_and_load(&key, config.lock, now).await?;
                (guard, Reloaded::Changed(record))
            }
        };
        match reloaded {
            Reloaded::Unchanged => {}
            Reloaded::Changed(Some(record)) if !record.is_expired(now) => {
                if modified {
                    tracing::warn!(session = %id, "changes made before the lock conflicted with a concurrent write and were discarded");
                }
                state.session = Loaded::Existing(Live { id: Some(id), record });
            }
            Reloaded::Changed(_) => {
                state.session = Loaded::Absent;
                state.clear_cookie = true;
                guard.release_quietly().await;
                return Ok(());
            }
        }
        state.lock = Some(guard);
        Ok(())
    }
}
