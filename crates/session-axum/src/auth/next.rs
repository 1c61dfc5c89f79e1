//! `?next=`: where to go after logging in, and only ever somewhere local.

use std::borrow::Cow;

/// Longer `next` values are refused: no real page needs them, and they only
/// make a redirect header heavier.
const MAX_NEXT_BYTES: usize = 2048;

/// How many rounds of percent-decoding are inspected. A value still changing
/// after that many is refused.
const DECODE_ROUNDS: usize = 3;

/// `next` if it is a path on this site, otherwise `"/"`.
///
/// Use it on the `next` parameter of the login handler before redirecting,
/// so a link like `/login?next=https://evil.example` cannot turn your login
/// page into an open redirect. A local path starts with a single `/`; refused
/// are absolute URLs (`http://..`, `javascript:..`), scheme-relative ones
/// (`//host`, `/\host`), backslashes, whitespace and control characters
/// anywhere (browsers drop tabs and newlines, turning `/\t/host` into
/// `//host`), dot segments, non-ASCII, and the same tricks percent-encoded,
/// even several times (`/%2F%2Fhost`, `/%5Chost`, `/%252F%252Fhost`). Values
/// over 2 KiB are refused too.
///
/// ```
/// use session_axum::auth::safe_next;
///
/// assert_eq!(safe_next("/account/settings?tab=2"), "/account/settings?tab=2");
/// assert_eq!(safe_next("https://evil.example/"), "/");
/// assert_eq!(safe_next("//evil.example"), "/");
/// assert_eq!(safe_next("/\\evil.example"), "/");
/// assert_eq!(safe_next("/%2F%2Fevil.example"), "/");
/// assert_eq!(safe_next(""), "/");
/// ```
///
/// In a login handler:
///
/// ```
/// use axum::{Form, response::Redirect};
/// use session_axum::auth::safe_next;
///
/// #[derive(serde::Deserialize)]
/// struct LoginForm {
///     username: String,
///     password: String,
///     next: Option<String>,
/// }
///
/// async fn login(Form(form): Form<LoginForm>) -> Redirect {
///     // ... check the password, `auth.login(&user).await?` ...
///     Redirect::to(safe_next(form.next.as_deref().unwrap_or("/")))
/// }
/// # let _: axum::Router = axum::Router::new().route("/login", axum::routing::post(login));
/// ```
#[must_use]
pub fn safe_next(next: &str) -> &str {
    if is_local_path(next) { next } else { "/" }
}

fn is_local_path(next: &str) -> bool {
    let raw = next.as_bytes();
    // Raw, the value must be printable ASCII: spaces and anything else
    // arrive percent-encoded from a real request target.
    if raw.len() > MAX_NEXT_BYTES || !raw.iter().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let mut form = Cow::Borrowed(raw);
    for _ in 0..=DECODE_ROUNDS {
        if !looks_local(&form) {
            return false;
        }
        match percent_decode(&form) {
            None => return true,
            Some(decoded) => form = Cow::Owned(decoded),
        }
    }
    false
}

/// One form (raw or decoded) of the value: a single leading slash, no
/// backslash, no control character, no dot segment in the path.
fn looks_local(form: &[u8]) -> bool {
    let [b'/', rest @ ..] = form else { return false };
    if matches!(rest.first(), Some(b'/' | b'\\')) {
        return false;
    }
    if form.iter().any(|&b| b == b'\\' || b.is_ascii_control()) {
        return false;
    }
    let path_end = form.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(form.len());
    !form[..path_end].split(|&b| b == b'/').any(|segment| segment == b"." || segment == b"..")
}

/// Decodes every valid `%XX` (invalid ones stay as they are); `None` when
/// there is nothing to decode.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (input.get(i + 1).copied().and_then(hex), input.get(i + 2).copied().and_then(hex))
        {
            out.push(hi << 4 | lo);
            changed = true;
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// Percent-encodes a request target for a query value, keeping only
/// unreserved characters and `/` as they are.
pub(crate) fn encode_query_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_pass() {
        for next in [
            "/",
            "/account",
            "/account/settings?tab=2&x=%20y",
            "/a/b/c#section",
            "/search?q=100%25",
            "/http://not-a-scheme-here",
            "/caf%C3%A9",
            "/ok?redirect=//elsewhere",
            "/a.b/c..d/.e",
        ] {
            assert_eq!(safe_next(next), next, "{next:?}");
        }
    }

    #[test]
    fn everything_else_falls_back_to_the_root() {
        let long = format!("/{}", "a".repeat(MAX_NEXT_BYTES));
        for next in [
            "",
            "relative/path",
            "http://evil.example",
            "https://evil.example/",
            "HTTPS://evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/a\\b",
            " /space-first",
            "/with space",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\u{0}",
            "/\u{7f}",
            "/café",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/a%5Cb",
            "/%09/evil.example",
            "/%0A/evil.example",
            "/%00",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/%2525252F%2525252Fevil.example",
            "/../evil",
            "/a/../../b",
            "/a/./b",
            "/a/..",
            "/%2E%2E/evil",
            "/%2e%2e%2fevil",
            &long,
        ] {
            assert_eq!(safe_next(next), "/", "{next:?}");
        }
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode_query_value("/a b?c=d&e=%20#f"), "/a%20b%3Fc%3Dd%26e%3D%2520%23f");
        assert_eq!(encode_query_value("/plain-path_1.~"), "/plain-path_1.~");
    }
}
