//! After the handler: persist what it did to the session.

use std::io;

use http::{HeaderValue, StatusCode};
use serde_json::Value;
use session_core::{CookieFormat, Error, LockGuard, LockingStore, Record, StorageKey};

use crate::config::MAX_COOKIE_BYTES;
use crate::cookie::is_cookie_value;
use crate::session::{Live, Loaded, Mode, SessionInner, State};

/// How many fresh ids to try when `create` reports a collision. With 128-bit
/// random ids a second collision means the generator is broken.
const CREATE_ATTEMPTS: usize = 3;

/// What the layer adds to the response once the session is persisted.
pub(crate) struct Outcome {
    /// The `Set-Cookie` value to send, if the client's cookie must change.
    pub(crate) set_cookie: Option<HeaderValue>,
    /// Whether the handler looked at the session, so the response depends
    /// on the request's cookie (`Vary: Cookie`).
    pub(crate) accessed: bool,
}

impl SessionInner {
    /// Applies the handler's changes to the store and says what to tell the
    /// client. Nothing is written for a 5xx response.
    pub(crate) async fn finish(&self, status: StatusCode) -> Result<Outcome, Error> {
        let mut state = self.state.lock().await;
        let accessed = state.session.is_loaded();
        // The one place a lock the handler took is released, whatever
        // happened; a save that releases it in the same round trip takes it.
        let mut lock = state.lock.take();
        let persisted = if status.is_server_error() {
            Ok(None)
        } else {
            match &self.layer.mode {
                Mode::ServerSide(store) => {
                    self.persist(store.as_ref(), &mut state, &mut lock).await
                }
                Mode::ClientSide(format) => self.reseal(format.as_ref(), &mut state),
            }
        };
        if let Some(lock) = lock {
            lock.release_quietly().await;
        }
        let set_cookie = match persisted? {
            Some(value) => Some(value),
            None if state.clear_cookie && !status.is_server_error() => self.layer.cookies.removal(),
            None => None,
        };
        Ok(Outcome { set_cookie, accessed })
    }

    /// Writes a server-side session; returns the cookie to set, if any.
    async fn persist(
        &self,
        store: &dyn LockingStore,
        state: &mut State,
        lock: &mut Option<LockGuard>,
    ) -> Result<Option<HeaderValue>, Error> {
        let stale = std::mem::take(&mut state.stale);
        match &mut state.session {
            Loaded::Unloaded | Loaded::Absent => {
                delete_stale(store, &stale).await?;
                Ok(None)
            }
            Loaded::New(live) => {
                if live.record.data.is_empty() && !state.meta_changed && stale.is_empty() {
                    // Written and emptied again, or a cycled empty session: nothing to keep.
                    return Ok(None);
                }
                self.create(store, live).await?;
                // Only once the new session exists does the old one go, so a
                // failure here never logs anyone out.
                delete_stale(store, &stale).await?;
                Ok(self.cookie_for(live))
            }
            Loaded::Existing(live) if live.record.data.is_changed() || state.meta_changed => {
                let saved = self.save(store, live, state.meta_changed, lock.take()).await;
                self.unless_ended(state, saved)
            }
            Loaded::Existing(live) => {
                let touched = self.touch(store, live).await;
                self.unless_ended(state, touched)
            }
        }
    }

    /// Creates the new session, retrying with a fresh id on a collision.
    async fn create(&self, store: &dyn LockingStore, live: &mut Live) -> Result<(), Error> {
        let config = &self.layer.config;
        check_payload(&live.record, config.max_payload_bytes)?;
        live.record.version += 1;
        for _ in 0..CREATE_ATTEMPTS {
            match store.create(&live.record).await {
                Ok(()) => {
                    live.record.data.mark_unchanged();
                    return Ok(());
                }
                Err(Error::IdCollision) => {
                    tracing::warn!("session id collision on create; retrying with a fresh id");
                    let fresh = config.ids.generate();
                    live.id = Some(fresh);
                    live.record.key = fresh.storage_key();
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::IdCollision)
    }

    /// Saves a changed session under a new version, releasing `lock` with
    /// the save.
    async fn save(
        &self,
        store: &dyn LockingStore,
        live: &mut Live,
        meta_changed: bool,
        lock: Option<LockGuard>,
    ) -> Result<Option<HeaderValue>, Error> {
        let config = &self.layer.config;
        let now = config.clock.now();
        check_payload(&live.record, config.max_payload_bytes)?;
        // Writes move the idle deadline at most once per touch interval,
        // like reads; the cookie's Max-Age follows the deadline, so the
        // client's cookie only changes when the deadline did.
        let refreshed = meta_changed || config.expiry.needs_touch(&live.record, now);
        if refreshed {
            config.expiry.refresh(&mut live.record, now);
        }
        live.record.version += 1;
        match lock {
            Some(lock) => store.save_and_release(&live.record, lock).await?,
            None => store.save(&live.record).await?,
        }
        live.record.data.mark_unchanged();
        Ok(if refreshed { self.cookie_for(live) } else { None })
    }

    /// Moves the idle deadline of an unchanged session once it is due.
    async fn touch(
        &self,
        store: &dyn LockingStore,
        live: &mut Live,
    ) -> Result<Option<HeaderValue>, Error> {
        let config = &self.layer.config;
        let now = config.clock.now();
        if !config.expiry.needs_touch(&live.record, now) {
            return Ok(None);
        }
        config.expiry.refresh(&mut live.record, now);
        match store.touch(&live.record).await {
            Ok(()) => Ok(self.cookie_for(live)),
            Err(Error::NotFound) => Err(Error::NotFound),
            Err(error) => {
                // The data is intact and still valid until the old deadline.
                tracing::warn!(%error, "extending the session deadline failed");
                Ok(None)
            }
        }
    }

    /// A session deleted meanwhile (logout elsewhere) is never resurrected:
    /// the write is dropped and the client's cookie cleared.
    fn unless_ended(
        &self,
        state: &mut State,
        written: Result<Option<HeaderValue>, Error>,
    ) -> Result<Option<HeaderValue>, Error> {
        match written {
            Err(Error::NotFound) => {
                if let Some(live) = state.session.live() {
                    tracing::debug!(session = ?live.id, "session ended during the request; not saved");
                }
                state.clear_cookie = true;
                state.session = Loaded::Absent;
                Ok(None)
            }
            written => written,
        }
    }

    fn cookie_for(&self, live: &Live) -> Option<HeaderValue> {
        let config = &self.layer.config;
        let max_age = config.expiry.cookie_max_age(&live.record, config.clock.now());
        self.layer.cookies.set(&live.id?.expose(), max_age)
    }

    /// Client-side sessions: reseal the whole session into the cookie when it
    /// changed, its deadline is due a refresh, or a fallback key opened it.
    fn reseal(
        &self,
        format: &dyn CookieFormat,
        state: &mut State,
    ) -> Result<Option<HeaderValue>, Error> {
        let config = &self.layer.config;
        let now = config.clock.now();
        let live = match &mut state.session {
            Loaded::New(live) if !live.record.data.is_empty() || state.meta_changed => live,
            Loaded::Existing(live) => live,
            _ => return Ok(None),
        };
        let changed = live.record.data.is_changed() || state.meta_changed;
        if !changed && !config.expiry.needs_touch(&live.record, now) {
            return Ok(None);
        }
        check_payload(&live.record, config.max_payload_bytes)?;
        config.expiry.refresh(&mut live.record, now);
        let value = format.seal(&config.cookie_name, &live.record)?;
        if !is_cookie_value(&value) {
            return Err(Error::backend(
                "client-side cookie",
                std::io::Error::other(
                    "the cookie format produced a value that is not a valid cookie value",
                ),
            ));
        }
        // Browsers drop larger cookies silently; refuse loudly instead, so the
        // client keeps its previous, still valid cookie.
        let size = config.cookie_name.len() + value.len();
        if size > MAX_COOKIE_BYTES {
            return Err(Error::PayloadTooLarge { size, limit: MAX_COOKIE_BYTES });
        }
        live.record.data.mark_unchanged();
        let max_age = config.expiry.cookie_max_age(&live.record, now);
        Ok(self.layer.cookies.set(&value, max_age))
    }
}

/// Deletes the sessions this request moved away from or destroyed.
async fn delete_stale(store: &dyn LockingStore, stale: &[StorageKey]) -> Result<(), Error> {
    for key in stale {
        store.delete(key).await?;
    }
    Ok(())
}

/// Refuses a session whose JSON encoding exceeds `limit`, without building
/// the encoding. The store encodes the data once more when it saves, so the
/// exact count (a second serialization) is only done when a cheap upper
/// bound is over the limit.
fn check_payload(record: &Record, limit: usize) -> Result<(), Error> {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let bound = payload_bound(record);
    if bound <= limit {
        return Ok(());
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, &record.data)?;
    if counter.0 > limit {
        return Err(Error::PayloadTooLarge { size: counter.0, limit });
    }
    Ok(())
}

/// At least the length of the record's data as JSON.
fn payload_bound(record: &Record) -> usize {
    let entries = record.data.as_map().iter();
    2 + entries.map(|(key, value)| string_bound(key) + 1 + value_bound(value)).sum::<usize>()
}

/// At least the length of `value` as JSON (with a separator after it).
fn value_bound(value: &Value) -> usize {
    // Numbers: 20 digits and a sign for integers, at most 24 for floats.
    const NUMBER: usize = 25;
    1 + match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => NUMBER,
        Value::String(text) => string_bound(text),
        Value::Array(items) => 2 + items.iter().map(value_bound).sum::<usize>(),
        Value::Object(entries) => {
            2 + entries
                .iter()
                .map(|(key, value)| string_bound(key) + 1 + value_bound(value))
                .sum::<usize>()
        }
    }
}

/// At least the length of `text` as a JSON string: quotes, and every byte
/// as a six-byte `\u00XX` escape at worst.
fn string_bound(text: &str) -> usize {
    2 + 6 * text.len()
}

#[cfg(test)]
mod tests {
    use session_core::{SessionId, Timestamp};

    use super::*;

    fn record_with(value: Value) -> Record {
        let now = Timestamp::from_unix_seconds(0);
        let mut record = Record::new(SessionId::random().storage_key(), now, now, None);
        record.data.insert_value("k\u{1}\"", value);
        record
    }

    #[test]
    fn the_bound_is_never_below_the_encoding() {
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(-1.234_567_890_123_456_7e-300),
            Value::from("\u{0}\u{1f}\"\\ é \u{10ffff}"),
            serde_json::json!([[], {}, [null, {"\u{7}": [1, 2.5, "x"]}]]),
        ];
        for value in values {
            let record = record_with(value);
            let exact = serde_json::to_vec(&record.data).unwrap().len();
            let bound = payload_bound(&record);
            assert!(bound >= exact, "{bound} < {exact} for {:?}", record.data);
            // Exactly at the limit passes, one byte under it fails.
            assert!(check_payload(&record, exact).is_ok());
            match check_payload(&record, exact - 1) {
                Err(Error::PayloadTooLarge { size, limit }) => {
                    assert_eq!((size, limit), (exact, exact - 1));
                }
                other => panic!("expected PayloadTooLarge, got {other:?}"),
            }
        }
    }
}
