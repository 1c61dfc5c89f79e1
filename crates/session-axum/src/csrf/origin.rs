//! The same-origin check in front of the token: what the browser's
//! `Sec-Fetch-Site` or `Origin` header says of where a request comes from.

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderName, Uri};

pub(super) const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why the browser's headers say the request comes from another origin, or
/// `None` if they do not.
pub(super) fn cross_origin(
    headers: &HeaderMap,
    uri: &Uri,
    trusted: &[String],
) -> Option<&'static str> {
    let origin = headers.get(ORIGIN).map(|origin| origin.as_bytes());
    let trusted_origin = origin
        .is_some_and(|origin| trusted.iter().any(|t| t.as_bytes().eq_ignore_ascii_case(origin)));
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        // `none`: the user's own doing (a bookmark, the address bar).
        return (!matches!(site.as_bytes(), b"same-origin" | b"none") && !trusted_origin)
            .then_some("Sec-Fetch-Site is neither same-origin nor none");
    }
    // Older browsers send no Sec-Fetch-Site, but they do send Origin.
    let Some(origin) = origin else {
        // Not from a browser that rides cookies across sites: the token decides.
        return None;
    };
    if trusted_origin {
        return None;
    }
    // HTTP/2 carries the host in the URI's authority instead of `Host`.
    let host = headers
        .get(HOST)
        .map(|host| host.as_bytes())
        .or_else(|| uri.authority().map(|authority| authority.as_str().as_bytes()));
    match host {
        Some(host) if is_origin_of(origin, host) => None,
        Some(_) => Some("Origin is not the request's own origin"),
        None => Some("Origin without a Host to compare it with"),
    }
}

/// Whether `origin` is `http://` or `https://` followed by `host`.
fn is_origin_of(origin: &[u8], host: &[u8]) -> bool {
    [b"https://".as_slice(), b"http://"].iter().any(|scheme| {
        origin.strip_prefix(*scheme).is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let uri = Uri::from_static("/");
        let trusted = vec!["https://admin.example.com".to_owned()];
        let allowed = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[("sec-fetch-site", "same-site"), ("origin", "https://admin.example.com")]),
            headers(&[("origin", "https://example.com"), ("host", "example.com")]),
            headers(&[("origin", "http://localhost:3000"), ("host", "localhost:3000")]),
            headers(&[("origin", "https://Example.COM"), ("host", "example.com")]),
            headers(&[("origin", "https://admin.example.com"), ("host", "example.com")]),
        ];
        for allowed in allowed {
            assert_eq!(cross_origin(&allowed, &uri, &trusted), None, "{allowed:?}");
        }
        let refused = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://example.com"),
                ("host", "example.com"),
            ]),
            headers(&[("origin", "https://evil.example"), ("host", "example.com")]),
            headers(&[("origin", "null"), ("host", "example.com")]),
            headers(&[("origin", "ftp://example.com"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com.evil.example"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com:8443"), ("host", "example.com")]),
            headers(&[("origin", "https://example.com")]),
        ];
        for refused in refused {
            assert!(cross_origin(&refused, &uri, &trusted).is_some(), "{refused:?}");
        }
        // HTTP/2: the host is in the URI.
        let h2 = Uri::from_static("https://example.com/form");
        assert_eq!(cross_origin(&headers(&[("origin", "https://example.com")]), &h2, &[]), None);
    }
}
