//! Reading the session cookie from requests and writing it to responses.

use std::fmt::Write as _;
use std::time::Duration;

use cookie::Cookie;
use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::{MAX_COOKIE_BYTES, SessionConfig};

/// The values of every cookie named `name` in the request, in order; one
/// whose name and value together exceed [`MAX_COOKIE_BYTES`] comes as an
/// empty value (it is never decoded or passed to a store, and is cleared as
/// no session).
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
                // Unread, it stands as an empty value: no session, cleared
                // like any other session cookie that is not one.
                return Some("");
            }
            Some(value)
        })
}

/// One layer's `Set-Cookie` values, rendered once when the layer is built:
/// a response only appends the value and, for a persistent cookie, its
/// `Max-Age`. Building each header through `cookie::Cookie`'s `Display`
/// instead cost more than the rest of a memory-store save.
#[derive(Debug)]
pub(crate) struct CookieTemplate {
    /// `name=`.
    prefix: String,
    /// Every attribute but `Max-Age`, each with its leading `; `.
    attributes: String,
    /// The whole header that makes the browser drop the cookie.
    removal: Option<HeaderValue>,
}

impl CookieTemplate {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        // The `cookie` crate renders the attributes, so their spelling and
        // order stay its own; only the value is spliced in per response.
        let prefix = format!("{}=", config.cookie_name);
        let rendered = base_cookie(config).to_string();
        let attributes = rendered.strip_prefix(&prefix).unwrap_or_default().to_owned();
        let mut removal = base_cookie(config);
        removal.make_removal();
        Self { prefix, attributes, removal: header_value(removal.to_string()) }
    }

    /// A `Set-Cookie` value carrying `value`, with `max_age` (`None`: a
    /// browser-session cookie).
    pub(crate) fn set(&self, value: &str, max_age: Option<Duration>) -> Option<HeaderValue> {
        const MAX_AGE: &str = "; Max-Age=";
        let mut header = String::with_capacity(
            self.prefix.len() + value.len() + self.attributes.len() + MAX_AGE.len() + 20,
        );
        header.push_str(&self.prefix);
        header.push_str(value);
        header.push_str(&self.attributes);
        if let Some(max_age) = max_age {
            header.push_str(MAX_AGE);
            // Writing to a String cannot fail.
            let _ = write!(header, "{}", max_age.as_secs());
        }
        header_value(header)
    }

    /// A `Set-Cookie` value that makes the browser drop the cookie.
    pub(crate) fn removal(&self) -> Option<HeaderValue> {
        self.removal.clone()
    }
}

/// Whether `value` may be sent as a cookie value unencoded (RFC 6265
/// `cookie-octet`s: printable ASCII except space, `"`, `,`, `;` and `\`).
pub(crate) fn is_cookie_value(value: &str) -> bool {
    // Every byte is checked, without branches and without stopping early, so
    // the compiler checks 16 bytes per step with SIMD compares. A sealed
    // value is checked on every response that carries one, and the
    // byte-at-a-time `all(matches!(..))` cost 15 instructions per byte, more
    // than sealing a small session with AES-GCM.
    value.bytes().fold(true, |ok, b| {
        ok & (b.wrapping_sub(0x21) < 0x5e) & (b != b'"') & (b != b',') & (b != b';') & (b != b'\\')
    })
}

fn base_cookie(config: &SessionConfig) -> Cookie<'static> {
    let mut cookie = Cookie::new(config.cookie_name.clone(), "");
    cookie.set_secure(config.secure);
    cookie.set_http_only(config.http_only);
    cookie.set_same_site(config.same_site);
    cookie.set_path(config.path.clone());
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

fn header_value(header: String) -> Option<HeaderValue> {
    // Written verbatim, not percent-encoded: names, paths and domains are
    // validated by SessionConfig, ids are base64url and sealed values are
    // checked by `is_cookie_value`, and the request side reads values raw.
    // So this only fails on a bug; log rather than panic.
    match HeaderValue::try_from(header) {
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
    fn blanks_oversized_values_and_skips_malformed_pairs() {
        let big = format!("id={}", "A".repeat(MAX_COOKIE_BYTES));
        let headers = headers(&[&big, "id", "id=ok"]);
        let found: Vec<_> = request_cookies(&headers, "id").collect();
        assert_eq!(found, ["", "ok"]);
    }

    #[test]
    fn cookie_values_are_cookie_octets() {
        assert!(is_cookie_value("gAAAAABk-_.x="));
        for bad in ["a b", "a;b", "a,b", "a\"b", "a\\b", "é", "a\u{7f}"] {
            assert!(!is_cookie_value(bad), "{bad:?}");
        }
        // Byte by byte against RFC 6265's `cookie-octet`, alone and at every
        // position of a longer value (the check works on blocks of bytes).
        for byte in 0..=u8::MAX {
            let octet =
                matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
            let Ok(alone) = std::str::from_utf8(&[byte]).map(str::to_owned) else { continue };
            assert_eq!(is_cookie_value(&alone), octet, "{byte:#x}");
            for at in [0, 15, 16, 31, 40] {
                let mut long = "A".repeat(41);
                long.replace_range(at..=at, &alone);
                assert_eq!(is_cookie_value(&long), octet, "{byte:#x} at {at}");
            }
        }
    }

    #[test]
    fn padding_is_not_percent_encoded() {
        let value = CookieTemplate::new(&SessionConfig::default()).set("abc==", None).unwrap();
        assert!(value.to_str().unwrap().starts_with("id=abc==;"), "{value:?}");
    }

    #[test]
    fn writes_secure_attributes() {
        let template = CookieTemplate::new(&SessionConfig::default());
        let value = template.set("abc", Some(Duration::from_secs(60))).unwrap();
        let text = value.to_str().unwrap();
        for part in ["id=abc", "HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = template.removal().unwrap();
        assert!(removal.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn renders_what_the_cookie_crate_renders() {
        let configs = [
            SessionConfig::default(),
            SessionConfig::default().with_host_prefix(),
            SessionConfig::default()
                .with_cookie_name("sid")
                .with_secure(false)
                .with_http_only(false)
                .with_same_site(cookie::SameSite::Strict)
                .with_path("/app")
                .with_domain("example.com"),
        ];
        for config in configs {
            let template = CookieTemplate::new(&config);
            for max_age in [None, Some(Duration::from_secs(86_400))] {
                let mut expected = base_cookie(&config);
                expected.set_value("v4lue-_");
                if let Some(max_age) = max_age {
                    expected.set_max_age(cookie::time::Duration::seconds(86_400));
                    assert_eq!(max_age.as_secs(), 86_400);
                }
                let rendered = template.set("v4lue-_", max_age).unwrap();
                assert_eq!(rendered.to_str().unwrap(), expected.to_string(), "{config:?}");
            }
        }
    }
}
