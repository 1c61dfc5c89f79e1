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

/// What every request of one [`SessionLayer`](crate::SessionLayer) shares.
pub(crate) struct LayerShared {
    /// The server-side store; for client-side sessions a stand-in that
    /// answers [`Error::Unsupported`]. Call it through [`Self::store`].
    pub(crate) store: Arc<dyn LockingStore>,
    /// Set for client-side sessions: the whole session travels in the cookie.
    pub(crate) format: Option<Arc<dyn CookieFormat>>,
    pub(crate) config: SessionConfig,
    /// `config`'s cookie attributes, rendered once.
    pub(crate) cookies: CookieTemplate,
}

impl LayerShared {
    pub(crate) fn new(
        store: Arc<dyn LockingStore>,
        format: Option<Arc<dyn CookieFormat>>,
        config: SessionConfig,
    ) -> Self {
        let cookies = CookieTemplate::new(&config);
        Self { store, format, config, cookies }
    }

    /// The store as a trait object. Calling methods on the `Arc` itself
    /// would go through `Arc<S>`'s forwarding impl: a second boxed future
    /// per store call.
    pub(crate) fn store(&self) -> &dyn LockingStore {
        self.store.as_ref()
    }
}

/// What the request's session cookie carried.
pub(crate) enum Incoming {
    /// No usable session cookie.
    Nothing,
    /// A well-formed server-side session id, not yet known to exist.
    Id(SessionId),
    /// Sealed client-side session values, not yet opened; the first that
    /// opens is the session.
    Sealed(Vec<String>),
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("Nothing"),
            Self::Id(id) => f.debug_tuple("Id").field(id).finish(),
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
/// is served as having no session, and a new id is issued only if the
/// handler writes.
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
    /// Whether the incoming id was looked up (or there was none).
    pub(crate) loaded: bool,
    /// The live session, if there is one.
    pub(crate) current: Option<Current>,
    /// Keys to delete after the handler: cycled-away and destroyed sessions.
    pub(crate) stale: Vec<StorageKey>,
    /// The client holds a cookie we want gone (unknown id, destroyed session).
    pub(crate) clear_cookie: bool,
    /// Set when deadlines or the user changed without a data change.
    pub(crate) meta_changed: bool,
    /// The store lock, when the handler called [`Session::lock`].
    pub(crate) lock: Option<LockGuard>,
}

pub(crate) struct Current {
    /// The session id; `None` for client-side sessions, which have none.
    pub(crate) id: Option<SessionId>,
    pub(crate) record: Record,
    /// Not in the store yet: created after the handler, under `id`.
    pub(crate) is_new: bool,
}

impl<K: SessionKind> Session<K> {
    pub(crate) fn new(layer: Arc<LayerShared>, incoming: Incoming) -> Self {
        let inner = SessionInner { layer, incoming, state: Mutex::new(State::default()) };
        Self { inner: Arc::new(inner), _kind: PhantomData }
    }

    pub(crate) fn error(&self, error: Error) -> SessionError {
        SessionError::new(error, Arc::clone(&self.inner.layer.config.error_responder))
    }

    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// If the store fails, or the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        match &state.current {
            Some(current) => current.record.data.get(key).map_err(|e| self.error(e)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, creating the session if there is none.
    ///
    /// # Errors
    ///
    /// If the store fails while loading, or `value` cannot be represented as
    /// JSON.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|e| self.error(e.into()))?;
        let mut state = self.inner.state.lock().await;
        let current = self.inner.current_or_new(&mut state).await.map_err(|e| self.error(e))?;
        current.record.data.insert_value(key, value);
        Ok(())
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    ///
    /// If the store fails, or the removed value is not a `T` (it is removed
    /// all the same).
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        let Some(current) = &mut state.current else {
            return Ok(None);
        };
        current
            .record
            .data
            .remove(key)
            .map(|value| T::deserialize(value).map_err(|e| self.error(e.into())))
            .transpose()
    }

    /// Removes every key. The session (and its id) stays.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        if let Some(current) = &mut state.current {
            current.record.data.clear();
        }
        Ok(())
    }

    /// Whether the session holds no data (or does not exist).
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        Ok(state.current.as_ref().is_none_or(|current| current.record.data.is_empty()))
    }

    /// Moves the session to a new id, keeping its data. The old id stops
    /// working once the response is sent. Call this whenever privileges
    /// change (login), against session fixation.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        if self.inner.layer.format.is_some() {
            // A client-side session has no id; resealing it issues a new value.
            state.meta_changed |= state.current.is_some();
            return Ok(());
        }
        let fresh = self.inner.layer.config.ids.generate();
        let State { current, stale, .. } = &mut *state;
        if let Some(current) = current {
            if !current.is_new {
                stale.push(current.record.key);
            }
            current.id = Some(fresh);
            current.record.key = fresh.storage_key();
            current.is_new = true;
        }
        Ok(())
    }

    /// Ends the session: it is deleted from the store and the cookie is
    /// cleared when the response is sent. Writing to the session afterwards
    /// in the same request starts a new one.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        if let Some(current) = state.current.take()
            && !current.is_new
        {
            state.stale.push(current.record.key);
        }
        state.clear_cookie |= !matches!(self.inner.incoming, Incoming::Nothing);
        Ok(())
    }

    /// Gives this session its own expiry (for example "remember me"),
    /// creating the session if there is none.
    ///
    /// # Errors
    ///
    /// If the store fails while loading.
    pub async fn set_expiry(&self, expiry: SessionExpiry) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        let now = self.inner.layer.config.clock.now();
        let policy = self.inner.layer.config.expiry;
        let current = self.inner.current_or_new(&mut state).await.map_err(|e| self.error(e))?;
        policy.apply(&mut current.record, expiry, now);
        state.meta_changed = true;
        Ok(())
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
        self.inner.lock(&mut state).await.map_err(|e| self.error(e))?;
        Ok(LockedSession { session: self.clone() })
    }
}

/// Hooks for the auth layer, which builds on the session.
impl<K: SessionKind> Session<K> {
    /// The user this session is indexed under ([`Record::user`]).
    pub(crate) async fn user(&self) -> Result<Option<String>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        Ok(state.current.as_ref().and_then(|current| current.record.user.clone()))
    }

    /// Runs `read` on the session's data (`None`: no session), loading it
    /// first if needed.
    pub(crate) async fn read<R>(
        &self,
        read: impl FnOnce(Option<&SessionData>) -> R,
    ) -> Result<R, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        Ok(read(state.current.as_ref().map(|current| &current.record.data)))
    }

    /// Indexes the session under `user` (creating the session if needed), or
    /// removes it from the index with `None`.
    pub(crate) async fn set_user(&self, user: Option<String>) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        let current = self.inner.current_or_new(&mut state).await.map_err(|e| self.error(e))?;
        if current.record.user != user {
            current.record.user = user;
            state.meta_changed = true;
        }
        Ok(())
    }

    /// The storage key of the live session, if it exists in the store.
    pub(crate) async fn storage_key(&self) -> Result<Option<StorageKey>, SessionError> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_loaded(&mut state).await.map_err(|e| self.error(e))?;
        Ok(state
            .current
            .as_ref()
            .filter(|current| !current.is_new)
            .map(|current| current.record.key))
    }

    /// The server-side store behind this session.
    pub(crate) fn store(&self) -> &dyn LockingStore {
        self.inner.layer.store()
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

impl SessionInner {
    /// Whether the handler never used the session, so there is nothing to
    /// save and nothing to tell the client. A session still in use
    /// elsewhere (its state locked) counts as used.
    pub(crate) fn is_untouched(&self) -> bool {
        self.state.try_lock().is_ok_and(|state| {
            !state.loaded
                && state.current.is_none()
                && state.lock.is_none()
                && state.stale.is_empty()
                && !state.clear_cookie
        })
    }

    async fn ensure_loaded(&self, state: &mut State) -> Result<(), Error> {
        if state.loaded {
            return Ok(());
        }
        let config = &self.layer.config;
        match &self.incoming {
            Incoming::Nothing => {}
            Incoming::Id(id) => {
                let now = config.clock.now();
                match self.layer.store().load(&id.storage_key(), now).await? {
                    Some(record) if !record.is_expired(now) => {
                        state.current = Some(Current { id: Some(*id), record, is_new: false });
                    }
                    _ => {
                        tracing::debug!(session = %id, "unknown or expired session id; not adopted");
                        state.clear_cookie = true;
                    }
                }
            }
            Incoming::Sealed(values) => {
                let opened = self.layer.format.as_ref().and_then(|format| {
                    let now = config.clock.now();
                    values.iter().find_map(|value| format.open(&config.cookie_name, value, now))
                });
                match opened {
                    Some(opened) => {
                        // Opened with a fallback key: reissue under the primary.
                        state.meta_changed |= opened.needs_reseal;
                        state.current =
                            Some(Current { id: None, record: opened.record, is_new: false });
                    }
                    None => {
                        tracing::debug!("invalid or expired session cookie ignored");
                        state.clear_cookie = true;
                    }
                }
            }
        }
        state.loaded = true;
        Ok(())
    }

    async fn current_or_new<'s>(&self, state: &'s mut State) -> Result<&'s mut Current, Error> {
        self.ensure_loaded(state).await?;
        let config = &self.layer.config;
        let client_side = self.layer.format.is_some();
        Ok(state.current.get_or_insert_with(|| {
            let now = config.clock.now();
            if client_side {
                // No id and no store key: the cookie is the session.
                let record = config.expiry.new_record(StorageKey::from_bytes([0; 32]), now);
                return Current { id: None, record, is_new: true };
            }
            let id = config.ids.generate();
            let record = config.expiry.new_record(id.storage_key(), now);
            Current { id: Some(id), record, is_new: true }
        }))
    }

    async fn lock(&self, state: &mut State) -> Result<(), Error> {
        if state.lock.is_some() {
            return Ok(());
        }
        if self.layer.format.is_some() {
            // Client-side state has no server to lock: last writer wins.
            return self.ensure_loaded(state).await;
        }
        let target = match (&state.current, &self.incoming) {
            (Some(current), _) if !current.is_new => current.id.map(|id| (id, current.record.key)),
            (Some(_), _) => None,
            (None, _) if state.loaded => None,
            (None, Incoming::Id(id)) => Some((*id, id.storage_key())),
            (None, _) => None,
        };
        let Some((id, key)) = target else {
            state.loaded = true;
            return Ok(());
        };
        let config = &self.layer.config;
        let now = config.clock.now();
        let store = self.layer.store();
        let (guard, record) = match &state.current {
            // Loaded earlier in this request (say by `CurrentUser`) and not
            // modified since: the store only has to say whether it changed.
            Some(current) if !current.record.data.is_changed() && !state.meta_changed => {
                let version = current.record.version;
                match store.lock_and_reload(&key, config.lock, now, version).await? {
                    (guard, Reloaded::Unchanged) => {
                        state.lock = Some(guard);
                        return Ok(());
                    }
                    (guard, Reloaded::Changed(record)) => (guard, record),
                }
            }
            Some(_) => {
                tracing::warn!(session = %id, "changes made before Session::lock() were discarded by its reload");
                store.lock_and_load(&key, config.lock, now).await?
            }
            None => store.lock_and_load(&key, config.lock, now).await?,
        };
        state.loaded = true;
        match record {
            Some(record) if !record.is_expired(now) => {
                state.current = Some(Current { id: Some(id), record, is_new: false });
                state.lock = Some(guard);
            }
            _ => {
                state.current = None;
                state.clear_cookie = true;
                release(guard).await;
            }
        }
        Ok(())
    }
}

pub(crate) async fn release(guard: LockGuard) {
    if let Err(error) = guard.release().await {
        tracing::warn!(%error, "releasing a session lock failed; its lease will end it");
    }
}
