//! Reading the session cookie from requests and writing it to responses.

use std::time::Duration;

use cookie::Cookie;
use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::{MAX_COOKIE_BYTES, SessionConfig};

/// The values of every cookie named `name` in the request, in order, skipping
/// any whose name and value together exceed [`MAX_COOKIE_BYTES`] (those are
/// never decoded or passed to a store).
///
/// Parsing is by hand rather than through `cookie::Cookie::split_parse`: we
/// only want one name, and skipping the rest without allocating keeps the
/// per-request cost flat however many cookies the browser sends.
pub(crate) fn request_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=')?;
            if key.trim() != name {
                return None;
            }
            let value = value.trim();
            if name.len() + value.len() > MAX_COOKIE_BYTES {
                tracing::debug!(
                    cookie = name,
                    bytes = value.len(),
                    "ignoring an oversized session cookie unread"
                );
                return None;
            }
            Some(value)
        })
}

/// A `Set-Cookie` value carrying `value`, with `max_age` (`None`: a
/// browser-session cookie).
pub(crate) fn set_cookie(
    config: &SessionConfig,
    value: &str,
    max_age: Option<Duration>,
) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, value.to_owned());
    if let Some(max_age) = max_age {
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        cookie.set_max_age(cookie::time::Duration::seconds(seconds));
    }
    header_value(&cookie)
}

/// Whether `value` may be sent as a cookie value unencoded (RFC 6265
/// `cookie-octet`s: printable ASCII except space, `"`, `,`, `;` and `\`).
pub(crate) fn is_cookie_value(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// A `Set-Cookie` value that makes the browser drop the cookie.
pub(crate) fn removal_cookie(config: &SessionConfig) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, String::new());
    cookie.make_removal();
    header_value(&cookie)
}

fn base_cookie(config: &SessionConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(config.cookie_name.clone(), value);
    cookie.set_secure(config.secure);
    cookie.set_http_only(config.http_only);
    cookie.set_same_site(config.same_site);
    cookie.set_path(config.path.clone());
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

fn header_value(cookie: &Cookie<'_>) -> Option<HeaderValue> {
    // Written verbatim, not percent-encoded: names, paths and domains are
    // validated by SessionConfig, ids are base64url and sealed values are
    // checked by `is_cookie_value`, and the request side reads values raw.
    // So this only fails on a bug; log rather than panic.
    match HeaderValue::from_str(&cookie.to_string()) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(%error, "session cookie is not a valid header value");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn finds_the_named_cookie_across_headers() {
        let headers = headers(&["a=1; id=first", "id=second;b=2", "idx=no; xid=no"]);
        let found: Vec<_> = request_cookies(&headers, "id").collect();
        assert_eq!(found, ["first", "second"]);
    }

    #[test]
    fn skips_oversized_values_and_malformed_pairs() {
        let big = format!("id={}", "A".repeat(MAX_COOKIE_BYTES));
        let headers = headers(&[&big, "id", "id=ok"]);
        let found: Vec<_> = request_cookies(&headers, "id").collect();
        assert_eq!(found, ["ok"]);
    }

    #[test]
    fn cookie_values_are_cookie_octets() {
        assert!(is_cookie_value("gAAAAABk-_.x="));
        for bad in ["a b", "a;b", "a,b", "a\"b", "a\\b", "é", "a\u{7f}"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn padding_is_not_percent_encoded() {
        let value = set_cookie(&SessionConfig::default(), "abc==", None).unwrap();
        assert!(value.to_str().unwrap().starts_with("id=abc==;"), "{value:?}");
    }

    #[test]
    fn writes_secure_attributes() {
        let config = SessionConfig::default();
        let value = set_cookie(&config, "abc", Some(Duration::from_secs(60))).unwrap();
        let text = value.to_str().unwrap();
        for part in ["id=abc", "HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = removal_cookie(&config).unwrap();
        assert!(removal.to_str().unwrap().contains("Max-Age=0"));
    }
}
