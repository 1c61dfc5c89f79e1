//! [`login_required`]: a route layer that turns anonymous requests away.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::response::{IntoResponse, Response as AxumResponse};
use http::header::LOCATION;
use http::{HeaderValue, StatusCode};
use tower_layer::Layer;

use crate::auth::guard::{Guard, Rule};
use crate::auth::next::{encode_query_value, safe_next};
use crate::auth::rejection::Unauthenticated;
use crate::auth::user::AuthUser;
use crate::kind::{DefaultSession, SessionKind};

/// A route layer that lets only logged-in users through.
///
/// Anonymous requests get 401 ([`Unauthenticated`]), or with
/// [`redirect_to`](LoginRequiredLayer::redirect_to) a `303 See Other` to the
/// login page with `?next=<original path and query>`. Every method is
/// guarded, `OPTIONS` included, as axum-login's guards do: answer CORS
/// preflights with a CORS layer outside the guard (below). The user is
/// loaded through the
/// [`AuthLayer`](crate::AuthLayer), once per request: a
/// [`CurrentUser`](crate::CurrentUser) in the handler costs nothing more.
///
/// The user type is named with a turbofish, `login_required::<User>()`,
/// as for [`permission_required::<User>(..)`](crate::permission_required).
///
/// Add it with [`Router::route_layer`](axum::Router::route_layer), not
/// `layer`: it then wraps only the routes that exist, so an unknown path is
/// still a 404 rather than a 401 or a redirect to the login page.
///
/// A failing user loader or session store answers through the session
/// layer's configured error response; a missing
/// [`AuthLayer`](crate::AuthLayer) or [`SessionLayer`](crate::SessionLayer)
/// with a 500 naming it.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_axum::{AuthLayer, CurrentUser, SessionLayer, login_required, memory::MemoryStore};
/// # use std::convert::Infallible;
/// # #[derive(Clone)] struct User { name: String }
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// # struct Users;
/// # impl session_axum::UserLoader<User> for Users {
/// #     type Error = Infallible;
/// #     async fn load(&self, _: &u64) -> Result<Option<User>, Infallible> { Ok(None) }
/// # }
///
/// async fn dashboard(user: CurrentUser<User>) -> String {
///     format!("Hello, {}", user.name)
/// }
///
/// let protected = Router::new()
///     .route("/dashboard", get(dashboard))
///     .route_layer(login_required::<User>().redirect_to("/login"));
///
/// let app: Router = Router::new()
///     .route("/login", get(|| async { "the login form" }))
///     .merge(protected)
///     .layer(AuthLayer::new(Users))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
pub fn login_required<U: AuthUser>() -> LoginRequiredLayer<U> {
    LoginRequiredLayer { login_url: None, _marker: PhantomData }
}

/// The layer built by [`login_required`].
///
/// ```
/// # #[derive(Clone)] struct User;
/// # impl session_axum::AuthUser for User {
/// #     type Id = u64;
/// #     fn id(&self) -> u64 { 0 }
/// #     fn session_auth_hash(&self) -> &[u8] { b"" }
/// # }
/// use session_axum::{auth::LoginRequiredLayer, login_required};
///
/// let api: LoginRequiredLayer<User> = login_required::<User>(); // 401
/// let pages: LoginRequiredLayer<User> = login_required::<User>().redirect_to("/login"); // 303
/// # let _ = (api, pages);
/// ```
#[must_use]
pub struct LoginRequiredLayer<U, K = DefaultSession> {
    login_url: Option<Arc<str>>,
    _marker: PhantomData<fn() -> (U, K)>,
}

impl<U: AuthUser, K: SessionKind> LoginRequiredLayer<U, K> {
    /// Redirects anonymous requests (`303 See Other`) to `login_url`, adding
    /// `next=<original path and query>` (percent-encoded) to its query. The
    /// `next` value is always a local path; read it back through
    /// [`safe_next`](crate::auth::safe_next) all the same, since anyone can
    /// craft a link to the login page.
    ///
    /// ```
    /// use session_axum::login_required;
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    ///
    /// // GET /orders?page=2, anonymous: 303 to /login?next=/orders%3Fpage%3D2
    /// let layer = login_required::<User>().redirect_to("/login");
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// If `login_url` is empty or holds characters that cannot appear in a
    /// `Location` header (control characters, spaces, non-ASCII). This is a
    /// programming error, caught at startup.
    pub fn redirect_to(mut self, login_url: impl Into<String>) -> Self {
        let login_url = login_url.into();
        assert!(
            !login_url.is_empty() && login_url.bytes().all(|b| b.is_ascii_graphic()),
            "invalid login URL {login_url:?}"
        );
        self.login_url = Some(login_url.into());
        self
    }

    /// The same guard for users logged in to the sessions of kind `Other`.
    /// Only the session kind changes: the redirect set with
    /// [`redirect_to`](Self::redirect_to) is kept.
    ///
    /// ```
    /// # #[derive(Clone)] struct User;
    /// # impl session_axum::AuthUser for User {
    /// #     type Id = u64;
    /// #     fn id(&self) -> u64 { 0 }
    /// #     fn session_auth_hash(&self) -> &[u8] { b"" }
    /// # }
    /// use session_axum::{SessionKind, login_required};
    ///
    /// struct AdminArea;
    /// impl SessionKind for AdminArea {
    ///     const NAME: &'static str = "admin";
    /// }
    ///
    /// let guard = login_required::<User>().redirect_to("/admin/login").for_kind::<AdminArea>();
    /// # let _ = guard;
    /// ```
    pub fn for_kind<Other: SessionKind>(self) -> LoginRequiredLayer<U, Other> {
        LoginRequiredLayer { login_url: self.login_url, _marker: PhantomData }
    }
}

impl<U, K> Clone for LoginRequiredLayer<U, K> {
    fn clone(&self) -> Self {
        Self { login_url: self.login_url.clone(), _marker: PhantomData }
    }
}

impl<U, K: SessionKind> fmt::Debug for LoginRequiredLayer<U, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequiredLayer")
            .field("user", &std::any::type_name::<U>())
            .field("kind", &K::NAME)
            .field("login_url", &self.login_url)
            .finish()
    }
}

impl<Inner, U, K> Layer<Inner> for LoginRequiredLayer<U, K> {
    type Service = Guard<Inner, U, K>;

    fn layer(&self, inner: Inner) -> Self::Service {
        Guard::new(inner, Rule::LoggedIn { login_url: self.login_url.clone() })
    }
}

/// `303 See Other` to the login page, with `next` when the original target
/// is a local path.
pub(crate) fn login_redirect(login_url: &str, target: &str) -> AxumResponse {
    let mut location = login_url.to_owned();
    let next = safe_next(target);
    if next == target {
        let (base, fragment) = match location.split_once('#') {
            Some((base, fragment)) => (base.to_owned(), Some(fragment.to_owned())),
            None => (location.clone(), None),
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        location = format!("{base}{separator}next={}", encode_query_value(target));
        if let Some(fragment) = fragment {
            location.push('#');
            location.push_str(&fragment);
        }
    }
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        // The login URL was checked at startup and `next` is encoded.
        Err(_) => Unauthenticated.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(response: &AxumResponse) -> &str {
        response.headers()[LOCATION].to_str().unwrap()
    }

    #[test]
    fn redirects_carry_the_encoded_target() {
        let response = login_redirect("/login", "/orders?page=2&q=a%20b");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/login?next=/orders%3Fpage%3D2%26q%3Da%2520b");
        let response = login_redirect("/login?lang=en#form", "/x");
        assert_eq!(location(&response), "/login?lang=en&next=/x#form");
    }

    #[test]
    fn non_local_targets_are_dropped() {
        let response = login_redirect("/login", "//evil.example/");
        assert_eq!(location(&response), "/login");
    }
}
