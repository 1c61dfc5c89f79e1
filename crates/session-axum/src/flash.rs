//! Flash messages: notes for the visitor's next page ("logged out",
//! "password changed"), kept in the session until they are read once.
//!
//! The pattern of Rails' `flash`, Django's `messages` and axum-messages: a
//! handler that answers a form post with a redirect adds a message, and the
//! page the browser is redirected to takes it and shows it. Messages live
//! under one key of the session ([`FLASH_KEY`]), so they work on every
//! server-side store and in cookie sessions alike, and they end with the
//! session (a logout drops them with it; add the message after logging out
//! to show it on the next page).
//!
//! ```
//! use axum::{Router, response::Redirect, routing::{get, post}};
//! use session_axum::flash::Flash;
//! use session_axum::{SessionError, SessionLayer, memory::MemoryStore};
//!
//! async fn save_settings(flash: Flash) -> Result<Redirect, SessionError> {
//!     // ... save the settings ...
//!     flash.success("Settings saved").await?;
//!     Ok(Redirect::to("/settings"))
//! }
//!
//! async fn settings(flash: Flash) -> Result<String, SessionError> {
//!     let mut page = String::new();
//!     for message in flash.take::<String>().await? {
//!         page += &format!("[{}] {}\n", message.level, message.content);
//!     }
//!     Ok(page + "the settings form")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/settings", get(settings).post(save_settings))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```

use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::kind::{DefaultSession, SessionKind};
use crate::rejection::{MissingSessionLayer, SessionError};
use crate::session::Session;

/// The session key the messages are kept under, as a JSON list of
/// `{"level": .., "content": ..}`. Do not use it for anything else.
pub const FLASH_KEY: &str = "_flash";

/// How a message should be shown.
///
/// ```
/// use session_axum::flash::Level;
///
/// assert_eq!(Level::Warning.to_string(), "warning");
/// assert_eq!(serde_json::to_string(&Level::Error).unwrap(), r#""error""#);
/// assert!(Level::Info < Level::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something the visitor may want to know.
    Info,
    /// What they asked for was done.
    Success,
    /// It was done, but something deserves attention.
    Warning,
    /// It was not done.
    Error,
}

impl Level {
    /// The level's name in lower case, as it is stored (and handy as a CSS
    /// class).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flash message: a level and a payload, text by default or any serde
/// type.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use session_axum::flash::{Level, Message};
///
/// #[derive(Serialize, Deserialize)]
/// struct Undo {
///     text: String,
///     undo_url: String,
/// }
///
/// let plain = Message { level: Level::Info, content: "Saved".to_owned() };
/// let rich = Message {
///     level: Level::Success,
///     content: Undo { text: "Deleted".into(), undo_url: "/trash/7/restore".into() },
/// };
/// # let _ = (plain, rich);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<T = String> {
    /// How to show it.
    pub level: Level,
    /// What to show.
    pub content: T,
}

/// The extractor for flash messages of the sessions of kind `K`.
///
/// Adding a message writes the session (creating it if there is none);
/// [`take`](Self::take) reads the pending messages and removes them, so each
/// is shown once, in the order it was added. Messages wait until they are
/// taken, across any number of requests, for as long as the session lives.
///
/// A flash message is an ordinary write to the session: it is saved with the
/// rest of the session after the handler (never on a 5xx response).
/// [`push`](Self::push), and [`take`](Self::take) when messages are
/// pending, take the session's lock (held until the response is ready, as
/// for [`Session::lock`]; a page with no message pending takes none), so
/// concurrent requests of one session lose no message and show none twice,
/// on every server-side store. Changes the handler made before are kept,
/// unless another request wrote the session meanwhile (then its data wins,
/// as for [`Session::cycle_id`]). Cookie sessions have no lock: there the
/// last response to set the cookie wins, and a concurrent message can be
/// lost.
///
/// ```
/// use session_axum::flash::Flash;
/// use session_axum::SessionError;
///
/// async fn delete_account(flash: Flash) -> Result<&'static str, SessionError> {
///     flash.warning("Your account will be deleted in 7 days").await?;
///     Ok("scheduled")
/// }
/// # let _ = delete_account;
/// ```
pub struct Flash<K: SessionKind = DefaultSession> {
    session: Session<K>,
}

impl<K: SessionKind> Flash<K> {
    /// Flash messages kept in `session`.
    #[must_use]
    pub fn new(session: Session<K>) -> Self {
        Self { session }
    }

    /// Adds a message with any serializable `content`, to be taken later.
    ///
    /// # Errors
    ///
    /// If the content cannot be written as JSON, the pending messages are
    /// not a list of messages, or the store fails while loading the session.
    ///
    /// ```
    /// use session_axum::flash::{Flash, Level};
    ///
    /// async fn handler(flash: Flash) -> Result<(), session_axum::SessionError> {
    ///     flash.push(Level::Info, serde_json::json!({ "text": "Welcome", "tour": true })).await
    /// }
    /// # let _ = handler;
    /// ```
    pub async fn push(&self, level: Level, content: impl Serialize) -> Result<(), SessionError> {
        // Read-modify-write of one key: under the lock, or a concurrent
        // request's message would be lost.
        self.session.lock_keeping_changes().await?;
        // Pending messages are kept as JSON values, so messages of different
        // payload types can wait side by side.
        let mut pending: Vec<Message<serde_json::Value>> =
            self.session.get(FLASH_KEY).await?.unwrap_or_default();
        let content = serde_json::to_value(content).map_err(|e| self.session.error(e.into()))?;
        pending.push(Message { level, content });
        self.session.insert(FLASH_KEY, pending).await
    }

    /// Adds an [`Level::Info`] text message.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub async fn info(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.push(Level::Info, text.into()).await
    }

    /// Adds a [`Level::Success`] text message.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub async fn success(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.push(Level::Success, text.into()).await
    }

    /// Adds a [`Level::Warning`] text message.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub async fn warning(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.push(Level::Warning, text.into()).await
    }

    /// Adds a [`Level::Error`] text message.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub async fn error(&self, text: impl Into<String>) -> Result<(), SessionError> {
        self.push(Level::Error, text.into()).await
    }

    /// The pending messages, oldest first, removed from the session: each
    /// message is taken once. Without a session, or with no message, an
    /// empty list (and nothing is written).
    ///
    /// # Errors
    ///
    /// If a message's content is not a `T` (the messages are then left in
    /// place), or the store fails while loading the session.
    pub async fn take<T: DeserializeOwned>(&self) -> Result<Vec<Message<T>>, SessionError> {
        // Nothing pending, the common page view: no lock. A message pushed
        // meanwhile waits for the next page.
        if self.session.get::<serde_json::Value>(FLASH_KEY).await?.is_none() {
            return Ok(Vec::new());
        }
        // Under the lock: a message pushed meanwhile is neither lost nor
        // shown twice.
        self.session.lock_keeping_changes().await?;
        // Decoded before removing, so a wrong `T` loses nothing.
        let Some(pending) = self.session.get::<Vec<Message<T>>>(FLASH_KEY).await? else {
            return Ok(Vec::new());
        };
        self.session.remove::<serde_json::Value>(FLASH_KEY).await?;
        Ok(pending)
    }

    /// The session the messages are kept in.
    #[must_use]
    pub fn session(&self) -> &Session<K> {
        &self.session
    }
}

impl<K: SessionKind> Clone for Flash<K> {
    fn clone(&self) -> Self {
        Self { session: self.session.clone() }
    }
}

impl<K: SessionKind> fmt::Debug for Flash<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flash").field("kind", &K::NAME).finish_non_exhaustive()
    }
}

impl<S, K> FromRequestParts<S> for Flash<K>
where
    S: Send + Sync,
    K: SessionKind,
{
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Session<K> as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Self::new)
    }
}
