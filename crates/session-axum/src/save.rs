//! After the handler: persist what it did to the session.

use std::io;

use http::{HeaderValue, StatusCode};
use serde_json::Value;
use session_core::{CookieFormat, Error, LockGuard, Record};

use crate::config::MAX_COOKIE_BYTES;

use crate::cookie::is_cookie_value;
use crate::session::{Current, SessionInner, State, release};

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
        let lock = state.lock.take();
        let accessed = state.loaded;
        if status.is_server_error() {
            if let Some(lock) = lock {
                release(lock).await;
            }
            return Ok(Outcome { set_cookie: None, accessed });
        }
        let set_cookie = match self.persist(&mut state, lock).await? {
            Some(value) => Some(value),
            None if state.clear_cookie => self.layer.cookies.removal(),
            None => None,
        };
        Ok(Outcome { set_cookie, accessed })
    }

    /// Writes the session; returns the cookie to set, if any.
    async fn persist(
        &self,
        state: &mut State,
        lock: Option<LockGuard>,
    ) -> Result<Option<HeaderValue>, Error> {
        if let Some(format) = &self.layer.format {
            return self.persist_client_side(state, format.as_ref());
        }
        let store = self.layer.store();
        let config = &self.layer.config;
        let now = config.clock.now();
        let stale = std::mem::take(&mut state.stale);

        let Some(current) = &mut state.current else {
            if let Some(lock) = lock {
                release(lock).await;
            }
            self.delete_stale(&stale).await?;
            return Ok(None);
        };

        if current.is_new {
            let keeps_nothing = current.record.data.is_empty() && !state.meta_changed;
            if keeps_nothing && stale.is_empty() {
                // Written and emptied again, or a cycled empty session: nothing to keep.
                if let Some(lock) = lock {
                    release(lock).await;
                }
                return Ok(None);
            }
            let created = self.create(current).await;
            if let Some(lock) = lock {
                release(lock).await;
            }
            created?;
            // Only once the new session exists does the old one go, so a
            // failure here never logs anyone out.
            self.delete_stale(&stale).await?;
            current.is_new = false;
            return Ok(self.cookie_for(current));
        }

        if current.record.data.is_changed() || state.meta_changed {
            check_payload(&current.record, config.max_payload_bytes)?;
            // Writes move the idle deadline at most once per touch interval,
            // like reads; the cookie's Max-Age follows the deadline, so the
            // client's cookie only changes when the deadline did.
            let refreshed = state.meta_changed || config.expiry.needs_touch(&current.record, now);
            if refreshed {
                config.expiry.refresh(&mut current.record, now);
            }
            current.record.version += 1;
            let saved = match lock {
                Some(lock) => store.save_and_release(&current.record, lock).await,
                None => store.save(&current.record).await,
            };
            return match saved {
                Ok(()) => {
                    current.record.data.mark_unchanged();
                    Ok(if refreshed { self.cookie_for(current) } else { None })
                }
                Err(Error::NotFound) => {
                    // Deleted meanwhile (logout elsewhere): never resurrect it.
                    tracing::debug!(session = ?current.id, "session ended during the request; not saved");
                    state.clear_cookie = true;
                    state.current = None;
                    Ok(None)
                }
                Err(error) => Err(error),
            };
        }

        if let Some(lock) = lock {
            release(lock).await;
        }
        if config.expiry.needs_touch(&current.record, now) {
            config.expiry.refresh(&mut current.record, now);
            return match store.touch(&current.record).await {
                Ok(()) => Ok(self.cookie_for(current)),
                Err(Error::NotFound) => {
                    state.clear_cookie = true;
                    state.current = None;
                    Ok(None)
                }
                Err(error) => {
                    // The data is intact and still valid until the old deadline.
                    tracing::warn!(%error, "extending the session deadline failed");
                    Ok(None)
                }
            };
        }
        Ok(None)
    }

    async fn create(&self, current: &mut Current) -> Result<(), Error> {
        let config = &self.layer.config;
        check_payload(&current.record, config.max_payload_bytes)?;
        current.record.version += 1;
        for _ in 0..CREATE_ATTEMPTS {
            match self.layer.store().create(&current.record).await {
                Ok(()) => {
                    current.record.data.mark_unchanged();
                    return Ok(());
                }
                Err(Error::IdCollision) => {
                    tracing::warn!("session id collision on create; retrying with a fresh id");
                    let fresh = config.ids.generate();
                    current.id = Some(fresh);
                    current.record.key = fresh.storage_key();
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::IdCollision)
    }

    async fn delete_stale(&self, stale: &[session_core::StorageKey]) -> Result<(), Error> {
        for key in stale {
            self.layer.store().delete(key).await?;
        }
        Ok(())
    }

    fn cookie_for(&self, current: &Current) -> Option<HeaderValue> {
        let config = &self.layer.config;
        let max_age = config.expiry.cookie_max_age(&current.record, config.clock.now());
        self.layer.cookies.set(&current.id?.expose(), max_age)
    }

    /// Client-side sessions: reseal the whole session into the cookie when it
    /// changed, its deadline is due a refresh, or a fallback key opened it.
    fn persist_client_side(
        &self,
        state: &mut State,
        format: &dyn CookieFormat,
    ) -> Result<Option<HeaderValue>, Error> {
        let config = &self.layer.config;
        let now = config.clock.now();
        let Some(current) = &mut state.current else { return Ok(None) };
        if current.is_new && current.record.data.is_empty() && !state.meta_changed {
            return Ok(None);
        }
        let changed = current.record.data.is_changed() || state.meta_changed;
        if !changed && !config.expiry.needs_touch(&current.record, now) {
            return Ok(None);
        }
        check_payload(&current.record, config.max_payload_bytes)?;
        config.expiry.refresh(&mut current.record, now);
        let value = format.seal(&config.cookie_name, &current.record)?;
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
        current.record.data.mark_unchanged();
        current.is_new = false;
        let max_age = config.expiry.cookie_max_age(&current.record, now);
        Ok(self.layer.cookies.set(&value, max_age))
    }
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
