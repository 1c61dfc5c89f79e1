//! What a server-side store keeps for one session.

use serde::{Deserialize, Serialize};

use crate::{SessionData, SessionExpiry, StorageKey, Timestamp};

/// One stored session.
///
/// The record never holds the session id, only its [`StorageKey`]: the id
/// lives in the client's cookie and nowhere else.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Record, SessionId, Timestamp};
///
/// let now = Timestamp::from_unix_seconds(1_000);
/// let record = Record::new(SessionId::random().storage_key(), now, now + Duration::from_secs(60), None);
/// assert!(!record.is_expired(now));
/// assert!(record.is_expired(now + Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The hashed id the record is stored under.
    pub key: StorageKey,
    /// The session dict.
    pub data: SessionData,
    /// When the session was created. Never changes.
    pub created_at: Timestamp,
    /// The last time the idle deadline was extended: the session's last use,
    /// to within the expiry policy's touch interval.
    pub last_seen: Timestamp,
    /// Sliding deadline: the session expires if unused until then.
    pub idle_deadline: Timestamp,
    /// Fixed deadline from creation; never extended. `None`: no absolute limit.
    pub absolute_deadline: Option<Timestamp>,
    /// The user this session belongs to, for the per-user index
    /// ([`SessionStore::list_for_user`](crate::SessionStore::list_for_user)).
    pub user: Option<String>,
    /// A per-session expiry policy (e.g. "remember me"), if one was set.
    pub expiry: Option<SessionExpiry>,
    /// Bumped on every save.
    pub version: u64,
}

impl Record {
    /// A new, empty record at version 0.
    #[must_use]
    pub fn new(
        key: StorageKey,
        now: Timestamp,
        idle_deadline: Timestamp,
        absolute_deadline: Option<Timestamp>,
    ) -> Self {
        Self {
            key,
            data: SessionData::default(),
            created_at: now,
            last_seen: now,
            idle_deadline,
            absolute_deadline,
            user: None,
            expiry: None,
            version: 0,
        }
    }

    /// When the session stops being valid: the earlier of the two deadlines.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.absolute_deadline
            .map_or(self.idle_deadline, |absolute| absolute.min(self.idle_deadline))
    }

    /// Whether the session is over at `now`. A session is valid strictly before
    /// its deadline.
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }
}
