//! When sessions end: idle and absolute timeouts, and the cookie's lifetime.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Record, Timestamp};

/// The expiry policy of a session layer.
///
/// - The **idle timeout** slides: use of the session pushes its deadline out,
///   at most once per [`touch_interval`](Self::touch_interval), so reads do
///   not turn into writes (a store "touch") and writes do not send a new
///   cookie each time. A session therefore ends between `idle_timeout -
///   touch_interval` and `idle_timeout` after its last use.
/// - The **absolute timeout** counts from creation and is never extended.
/// - The cookie is either persistent (`Max-Age` up to the deadline) or a
///   browser-session cookie. Either way the server enforces the deadlines from
///   the record, never from the cookie.
///
/// ```
/// use std::time::Duration;
/// use session_core::{ExpiryPolicy, Timestamp};
///
/// let policy = ExpiryPolicy::default()
///     .with_idle_timeout(Duration::from_secs(30 * 60))
///     .with_absolute_timeout(Some(Duration::from_secs(8 * 3600)));
/// let now = Timestamp::from_unix_seconds(0);
/// let record = policy.new_record(session_core::SessionId::random().storage_key(), now);
/// assert_eq!(record.idle_deadline, Timestamp::from_unix_seconds(1800));
/// assert_eq!(record.absolute_deadline, Some(Timestamp::from_unix_seconds(28_800)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle_timeout: Duration,
    absolute_timeout: Option<Duration>,
    touch_interval: Duration,
    browser_session_cookie: bool,
}

impl Default for ExpiryPolicy {
    /// Idle timeout 24 hours, absolute timeout 7 days, touch at most once a
    /// minute, persistent cookie.
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(24 * 3600),
            absolute_timeout: Some(Duration::from_secs(7 * 24 * 3600)),
            touch_interval: Duration::from_secs(60),
            browser_session_cookie: false,
        }
    }
}

impl ExpiryPolicy {
    /// Sets the sliding idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the absolute timeout from creation; `None` for no absolute limit.
    #[must_use]
    pub fn with_absolute_timeout(mut self, absolute_timeout: Option<Duration>) -> Self {
        self.absolute_timeout = absolute_timeout;
        self
    }

    /// Sets how often at most a request extends the idle deadline (and
    /// sends the cookie again with the new `Max-Age`). Default 60 seconds.
    #[must_use]
    pub fn with_touch_interval(mut self, touch_interval: Duration) -> Self {
        self.touch_interval = touch_interval;
        self
    }

    /// Sends cookies without `Max-Age`, so the browser drops them when it
    /// closes. The server-side deadlines still apply.
    #[must_use]
    pub fn with_browser_session_cookie(mut self, browser_session: bool) -> Self {
        self.browser_session_cookie = browser_session;
        self
    }

    /// The sliding idle timeout.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The absolute timeout, if any.
    #[must_use]
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute_timeout
    }

    /// The touch interval.
    #[must_use]
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
    }

    /// A new empty record for `key`, created `now`, with this policy's deadlines.
    #[must_use]
    pub fn new_record(&self, key: crate::StorageKey, now: Timestamp) -> Record {
        Record::new(
            key,
            now,
            now + self.idle_timeout,
            self.absolute_timeout.map(|absolute| now + absolute),
        )
    }

    /// The idle timeout that applies to `record`, taking its own
    /// [`SessionExpiry`] into account.
    #[must_use]
    pub fn idle_timeout_for(&self, record: &Record) -> Duration {
        match record.expiry {
            Some(SessionExpiry::Persistent { idle_timeout, .. }) => idle_timeout,
            Some(SessionExpiry::BrowserSession) | None => self.idle_timeout,
        }
    }

    /// Marks `record` as used at `now`: moves `last_seen` and the idle deadline.
    pub fn refresh(&self, record: &mut Record, now: Timestamp) {
        record.last_seen = now;
        record.idle_deadline = now + self.idle_timeout_for(record);
    }

    /// Whether a record that was only read should be touched at `now`.
    #[must_use]
    pub fn needs_touch(&self, record: &Record, now: Timestamp) -> bool {
        now.duration_since(record.last_seen) >= self.touch_interval
    }

    /// Applies a per-session expiry to `record`, recomputing its deadlines
    /// from `now` (idle) and from its creation (absolute).
    pub fn apply(&self, record: &mut Record, expiry: SessionExpiry, now: Timestamp) {
        let absolute_timeout = match expiry {
            SessionExpiry::Persistent { absolute_timeout, .. } => absolute_timeout,
            SessionExpiry::BrowserSession => self.absolute_timeout,
        };
        record.expiry = Some(expiry);
        record.absolute_deadline = absolute_timeout.map(|absolute| record.created_at + absolute);
        self.refresh(record, now);
    }

    /// The cookie's `Max-Age` for `record` at `now`, or `None` for a
    /// browser-session cookie.
    #[must_use]
    pub fn cookie_max_age(&self, record: &Record, now: Timestamp) -> Option<Duration> {
        let browser_session = match record.expiry {
            Some(SessionExpiry::BrowserSession) => true,
            Some(SessionExpiry::Persistent { .. }) => false,
            None => self.browser_session_cookie,
        };
        (!browser_session).then(|| record.expires_at().duration_since(now))
    }
}

/// A per-session override of the layer's [`ExpiryPolicy`], stored with the
/// session (for example "remember me" at login).
///
/// ```
/// use std::time::Duration;
/// use session_core::SessionExpiry;
///
/// let remember_me = SessionExpiry::Persistent {
///     idle_timeout: Duration::from_secs(30 * 24 * 3600),
///     absolute_timeout: Some(Duration::from_secs(90 * 24 * 3600)),
/// };
/// # let _ = remember_me;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SessionExpiry {
    /// A persistent cookie with its own timeouts.
    Persistent {
        /// Sliding idle timeout for this session.
        #[serde(with = "seconds")]
        idle_timeout: Duration,
        /// Absolute timeout from creation for this session; `None`: no limit.
        #[serde(with = "optional_seconds")]
        absolute_timeout: Option<Duration>,
    },
    /// A cookie without `Max-Age` (gone when the browser closes); the layer's
    /// timeouts still apply on the server.
    BrowserSession,
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` hands us `&Option<_>`.
    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&duration.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|secs| secs.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds)
    }

    #[test]
    fn idle_deadline_slides_but_absolute_does_not() {
        let policy = ExpiryPolicy::default()
            .with_idle_timeout(Duration::from_secs(10))
            .with_absolute_timeout(Some(Duration::from_secs(25)));
        let mut record = policy.new_record(SessionId::random().storage_key(), t(0));
        policy.refresh(&mut record, t(9));
        assert_eq!(record.idle_deadline, t(19));
        policy.refresh(&mut record, t(18));
        assert_eq!(record.expires_at(), t(25), "capped by the absolute deadline");
        assert!(!record.is_expired(t(24)));
        assert!(record.is_expired(t(25)));
    }

    #[test]
    fn touch_is_throttled() {
        let policy = ExpiryPolicy::default().with_touch_interval(Duration::from_secs(60));
        let record = policy.new_record(SessionId::random().storage_key(), t(0));
        assert!(!policy.needs_touch(&record, t(59)));
        assert!(policy.needs_touch(&record, t(60)));
    }

    #[test]
    fn per_session_expiry_overrides_the_policy() {
        let policy = ExpiryPolicy::default();
        let mut record = policy.new_record(SessionId::random().storage_key(), t(0));
        let remember = SessionExpiry::Persistent {
            idle_timeout: Duration::from_secs(1000),
            absolute_timeout: None,
        };
        policy.apply(&mut record, remember, t(5));
        assert_eq!(record.idle_deadline, t(1005));
        assert_eq!(record.absolute_deadline, None);
        assert_eq!(policy.cookie_max_age(&record, t(5)), Some(Duration::from_secs(1000)));

        policy.apply(&mut record, SessionExpiry::BrowserSession, t(6));
        assert_eq!(policy.cookie_max_age(&record, t(6)), None);
        let json = serde_json::to_string(&remember).unwrap();
        assert_eq!(serde_json::from_str::<SessionExpiry>(&json).unwrap(), remember);
    }
}
