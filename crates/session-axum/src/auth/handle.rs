//! [`Auth`]: log users in and out.

use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde_json::Value;
use session_core::{SessionExpiry, Timestamp};

use crate::auth::context::{AUTH_HASH_KEY, AuthContext, USER_ID_KEY, auth_digest, digest_hex};
use crate::auth::current_user::CurrentUser;
use crate::auth::rejection::AuthRejection;
use crate::auth::user::AuthUser;
use crate::csrf::CSRF_KEY;
use crate::kind::{DefaultSession, SessionKind};
use crate::session::Session;

/// Logs users in and out of the session of kind `K`.
///
/// An extractor: it needs the [`SessionLayer`](crate::SessionLayer) and the
/// [`AuthLayer`](crate::AuthLayer) for `U` around the route.
///
/// - [`login`](Self::login) always moves the session to a new id (against
///   session fixation), records the user's id and a digest of its
///   [`session_auth_hash`](AuthUser::session_auth_hash), files the
///   session under the user in the store's per-user index, and drops its
///   [CSRF token](crate::csrf).
/// - [`logout`](Self::logout) deletes the session from the store and clears
///   the cookie.
/// - [`logout_everywhere`](Self::logout_everywhere) ends every session of
///   the logged-in user; [`sessions`](Self::sessions) lists them.
///
/// Every method fails with [`AuthRejection`], which answers through the
/// session layer's configured error response, so handlers can `?` it; a
/// [`SessionError`](crate::SessionError) from [`session`](Self::session)
/// converts into it too.
///
/// ```
/// use axum::{Form, Router, response::Redirect, routing::post};
/// use session_axum::{Auth, auth::AuthRejection};
/// # use std::convert::Infallible;
/// # #[derive(Clone)] struct User { id: u64, password_hash: String }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { self.id }
/// #     fn session_auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() }
/// # }
/// # fn check_password(form: &LoginForm) -> Option<User> { None }
///
/// #[derive(serde::Deserialize)]
/// struct LoginForm {
///     username: String,
///     password: String,
/// }
///
/// async fn login(auth: Auth<User>, Form(form): Form<LoginForm>) -> Result<Redirect, AuthRejection> {
///     match check_password(&form) {
///         Some(user) => {
///             auth.login(&user).await?;
///             Ok(Redirect::to("/"))
///         }
///         None => Ok(Redirect::to("/login?failed=1")),
///     }
/// }
///
/// async fn logout(auth: Auth<User>) -> Result<Redirect, AuthRejection> {
///     auth.logout().await?;
///     Ok(Redirect::to("/login"))
/// }
///
/// let routes: Router = Router::new().route("/login", post(login)).route("/logout", post(logout));
/// ```
pub struct Auth<U, K: SessionKind = DefaultSession> {
    session: Session<K>,
    context: AuthContext<U, K>,
}

impl<U, K: SessionKind> Clone for Auth<U, K> {
    fn clone(&self) -> Self {
        Self { session: self.session.clone(), context: self.context.clone() }
    }
}

impl<U, K: SessionKind> fmt::Debug for Auth<U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("user", &std::any::type_name::<U>())
            .field("session", &self.session)
            .finish()
    }
}

/// How [`Auth::login_with`] treats the session.
///
/// By default, the data already in the session (a shopping cart, a language
/// choice) is kept, unless the session belonged to another user: one user's
/// data never carries over to the next. The session gets the layer's expiry.
///
/// ```
/// use std::time::Duration;
/// use session_axum::auth::LoginOptions;
/// use session_axum::core::SessionExpiry;
///
/// let remember_me = LoginOptions::new()
///     .clear_data(true)
///     .remember(SessionExpiry::Persistent {
///         idle_timeout: Duration::from_secs(30 * 24 * 3600),
///         absolute_timeout: Some(Duration::from_secs(90 * 24 * 3600)),
///     });
/// # let _ = remember_me;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct LoginOptions {
    clear_data: bool,
    expiry: Option<SessionExpiry>,
}

impl LoginOptions {
    /// The defaults: keep the session's data (unless it was another
    /// user's), the layer's expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to empty the session before logging in (default: only when
    /// it belonged to another user).
    pub fn clear_data(mut self, clear: bool) -> Self {
        self.clear_data = clear;
        self
    }

    /// Gives this login its own expiry, typically a long persistent one for
    /// "remember me" (see [`Session::set_expiry`]).
    pub fn remember(mut self, expiry: SessionExpiry) -> Self {
        self.expiry = Some(expiry);
        self
    }
}

/// One of the logged-in user's sessions, from [`Auth::sessions`].
///
/// ```
/// use session_axum::auth::SessionInfo;
///
/// fn describe(info: &SessionInfo) -> String {
///     let marker = if info.current { " (this device)" } else { "" };
///     format!("since {} last seen {}{marker}", info.created_at, info.last_seen)
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// When the session was created (at login: a login starts a new one).
    pub created_at: Timestamp,
    /// When it was last saved or its deadline last extended. Reads within
    /// the layer's touch interval do not move it.
    pub last_seen: Timestamp,
    /// When it ends unless used again (or its absolute deadline, if sooner).
    pub expires_at: Timestamp,
    /// Whether it is the session of this request.
    pub current: bool,
}

impl<U: AuthUser, K: SessionKind> Auth<U, K> {
    /// Logs `user` in with the default [`LoginOptions`].
    ///
    /// The session moves to a new id (the old one stops working when the
    /// response is sent), keeps its data unless it belonged to another user,
    /// and is filed under the user for [`sessions`](Self::sessions) and
    /// [`logout_everywhere`](Self::logout_everywhere).
    ///
    /// Its [CSRF token](crate::csrf) is dropped, so forms rendered before
    /// the login are refused after it; a page rendered by the same handler
    /// takes the new token with
    /// [`CsrfToken::from_session`](crate::csrf::CsrfToken::from_session).
    ///
    /// Calling it again after the user's password changed keeps this
    /// session logged in while the others end.
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    /// # fn save_new_password(user: &User, password: &str) -> User { user.clone() }
    ///
    /// async fn change_password(auth: Auth<User>, user: User) -> Result<&'static str, AuthRejection> {
    ///     let updated = save_new_password(&user, "correct horse battery staple");
    ///     // The new hash logs out every other session; this one logs in again.
    ///     auth.login(&updated).await?;
    ///     Ok("Password changed.")
    /// }
    /// # let _ = change_password;
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails, or the user id
    /// cannot be serialized.
    pub async fn login(&self, user: &U) -> Result<(), AuthRejection> {
        self.login_with(user, LoginOptions::default()).await
    }

    /// Logs `user` in (see [`login`](Self::login)) with `options`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_axum::core::SessionExpiry;
    /// use session_axum::{Auth, auth::{AuthRejection, LoginOptions}};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn login_remembered(auth: Auth<User>, user: User) -> Result<(), AuthRejection> {
    ///     let month = Duration::from_secs(30 * 24 * 3600);
    ///     let options = LoginOptions::new()
    ///         .remember(SessionExpiry::Persistent { idle_timeout: month, absolute_timeout: None });
    ///     auth.login_with(&user, options).await
    /// }
    /// # let _ = login_remembered;
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails, or the user id
    /// cannot be serialized.
    pub async fn login_with(&self, user: &U, options: LoginOptions) -> Result<(), AuthRejection> {
        let session = &self.session;
        let id = user.id();
        let index_key = id.to_string();
        let id_value = serde_json::to_value(&id).map_err(|e| session.error(e.into()))?;

        let previous_id = session.get::<Value>(USER_ID_KEY).await?;
        let previous_index = session.user().await?;
        let other_user = previous_id.is_some_and(|previous| previous != id_value)
            || previous_index.is_some_and(|previous| previous != index_key);
        if options.clear_data || other_user {
            session.clear().await?;
        }
        session.cycle_id().await?;
        // A CSRF token seen before the login (on the login page, or planted
        // by an attacker who logs the victim in) must not be valid after it.
        session.remove::<Value>(CSRF_KEY).await?;
        session.insert(USER_ID_KEY, id_value).await?;
        session.insert(AUTH_HASH_KEY, digest_hex(&auth_digest(user.session_auth_hash()))).await?;
        session.set_user(Some(index_key)).await?;
        if let Some(expiry) = options.expiry {
            session.set_expiry(expiry).await?;
        }
        self.context.reset().await;
        Ok(())
    }

    /// Logs out: the session is deleted from the store and the cookie is
    /// cleared when the response is sent. A no-op without a session.
    ///
    /// ```
    /// use axum::response::Redirect;
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn logout(auth: Auth<User>) -> Result<Redirect, AuthRejection> {
    ///     auth.logout().await?;
    ///     Ok(Redirect::to("/"))
    /// }
    /// # let _: axum::Router = axum::Router::new().route("/logout", axum::routing::post(logout));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails.
    pub async fn logout(&self) -> Result<(), AuthRejection> {
        self.session.destroy().await?;
        self.context.set_anonymous().await;
        Ok(())
    }

    /// Ends every session of the logged-in user, on every device, this one
    /// included; returns how many were ended. Without a (valid) logged-in
    /// user it only ends this session and returns 0.
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn logout_everywhere(auth: Auth<User>) -> Result<String, AuthRejection> {
    ///     let ended = auth.logout_everywhere().await?;
    ///     Ok(format!("Logged out of {ended} sessions."))
    /// }
    /// # let _: axum::Router = axum::Router::new().route("/", axum::routing::post(logout_everywhere));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails,
    /// [`AuthRejection::UserLoadFailed`] if the user loader does.
    /// Client-side (cookie) sessions have no server-side index: their store
    /// answers [`Error::Unsupported`](crate::core::Error::Unsupported) (in
    /// [`AuthRejection::Session`]).
    pub async fn logout_everywhere(&self) -> Result<u64, AuthRejection> {
        let ended = match self.context.user(&self.session).await? {
            Some(user) => self
                .session
                .store("ending a user's sessions")?
                .delete_for_user(&user.id().to_string())
                .await
                .map_err(|e| self.session.error(e))?,
            None => 0,
        };
        self.logout().await?;
        Ok(ended)
    }

    /// Ends every other session of the logged-in user now, keeping this one;
    /// the number ended. Without a (valid) logged-in user, nothing.
    ///
    /// A password change ends the other sessions anyway (their stored auth
    /// hash no longer matches), but only as each is next authenticated: until
    /// then its data is still served to routes that read the session without
    /// [`CurrentUser`](crate::CurrentUser). Call this after the change (and
    /// after [`login`](Self::login) with the updated user) to delete them at
    /// once, data included. A write racing it on one of those sessions finds
    /// it gone and cannot recreate it.
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    /// # fn save_new_password(user: &User, password: &str) -> User { user.clone() }
    ///
    /// async fn change_password(auth: Auth<User>, user: User) -> Result<String, AuthRejection> {
    ///     let updated = save_new_password(&user, "correct horse battery staple");
    ///     auth.login(&updated).await?;
    ///     let ended = auth.logout_other_sessions().await?;
    ///     Ok(format!("Password changed; {ended} other sessions ended."))
    /// }
    /// # let _ = change_password;
    /// ```
    ///
    /// # Errors
    ///
    /// As [`logout_everywhere`](Self::logout_everywhere).
    pub async fn logout_other_sessions(&self) -> Result<u64, AuthRejection> {
        let Some(user) = self.context.user(&self.session).await? else {
            return Ok(0);
        };
        let current = self.session.storage_key().await?;
        let now = self.session.config().clock.now();
        let store = self.session.store("ending a user's other sessions")?;
        let records = store
            .list_for_user(&user.id().to_string(), now)
            .await
            .map_err(|e| self.session.error(e))?;
        let mut ended = 0;
        for record in records.iter().filter(|record| Some(record.key) != current) {
            store.delete(&record.key).await.map_err(|e| self.session.error(e))?;
            ended += 1;
        }
        Ok(ended)
    }

    /// The logged-in user's live sessions: this request's first (marked
    /// [`current`](SessionInfo::current)), then the most recently seen.
    /// Empty without a (valid) logged-in user.
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn my_sessions(auth: Auth<User>) -> Result<String, AuthRejection> {
    ///     let mut page = String::new();
    ///     for info in auth.sessions().await? {
    ///         let marker = if info.current { " (this one)" } else { "" };
    ///         page += &format!("since {}, last seen {}{marker}\n", info.created_at, info.last_seen);
    ///     }
    ///     Ok(page)
    /// }
    /// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(my_sessions));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails,
    /// [`AuthRejection::UserLoadFailed`] if the user loader does.
    /// Client-side (cookie) sessions answer
    /// [`Error::Unsupported`](crate::core::Error::Unsupported) (in
    /// [`AuthRejection::Session`]).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, AuthRejection> {
        let Some(user) = self.context.user(&self.session).await? else {
            return Ok(Vec::new());
        };
        let current = self.session.storage_key().await?;
        let now = self.session.config().clock.now();
        let records = self
            .session
            .store("listing a user's sessions")?
            .list_for_user(&user.id().to_string(), now)
            .await
            .map_err(|e| self.session.error(e))?;
        let mut sessions: Vec<SessionInfo> = records
            .iter()
            .filter(|record| !record.is_expired(now))
            .map(|record| SessionInfo {
                created_at: record.created_at,
                last_seen: record.last_seen,
                expires_at: record.expires_at(),
                current: Some(record.key) == current,
            })
            .collect();
        sessions.sort_by(|a, b| b.current.cmp(&a.current).then(b.last_seen.cmp(&a.last_seen)));
        Ok(sessions)
    }

    /// The logged-in user, if any: the same lookup as
    /// [`CurrentUser`](crate::CurrentUser), shared with it (at most one
    /// load per request).
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn greeting(auth: Auth<User>) -> Result<&'static str, AuthRejection> {
    ///     Ok(if auth.user().await?.is_some() { "Welcome back" } else { "Hello" })
    /// }
    /// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(greeting));
    /// ```
    ///
    /// # Errors
    ///
    /// [`AuthRejection::Session`] if the session store fails,
    /// [`AuthRejection::UserLoadFailed`] if the user loader does.
    pub async fn user(&self) -> Result<Option<CurrentUser<U, K>>, AuthRejection> {
        Ok(self.context.user(&self.session).await?.map(CurrentUser::new))
    }

    /// The session this handle logs in and out. Its methods fail with
    /// [`SessionError`](crate::SessionError), which `?` turns into an
    /// [`AuthRejection`].
    ///
    /// ```
    /// use session_axum::{Auth, auth::AuthRejection};
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// async fn login_and_remember_theme(auth: Auth<User>, user: User) -> Result<(), AuthRejection> {
    ///     auth.login(&user).await?;
    ///     auth.session().insert("theme", "dark").await?;
    ///     Ok(())
    /// }
    /// # let _ = login_and_remember_theme;
    /// ```
    #[must_use]
    pub fn session(&self) -> &Session<K> {
        &self.session
    }
}

impl<S, U, K> FromRequestParts<S> for Auth<U, K>
where
    S: Send + Sync,
    U: AuthUser,
    K: SessionKind,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (context, session) = AuthContext::<U, K>::from_extensions(&parts.extensions)?;
        Ok(Self { session, context })
    }
}
