//! Where a request presents its token: the header, or else the field of a
//! URL-encoded form body, read up to a limit and handed on untouched.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use http::HeaderMap;
use http::header::CONTENT_TYPE;

use super::{CsrfReason, FORM_FIELD, HEADER_NAME};

/// The token the request presents, and its body to hand on (read into
/// memory if the token had to be looked for in it).
pub(super) async fn presented_token<B>(
    headers: &HeaderMap,
    body: B,
    max_form_bytes: usize,
) -> Result<(Option<Vec<u8>>, Body), CsrfReason>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if let Some(token) = headers.get(HEADER_NAME) {
        return Ok((Some(token.as_bytes().to_vec()), Body::new(body)));
    }
    if !is_urlencoded_form(headers) {
        return Ok((None, Body::new(body)));
    }
    let bytes = read_limited(Body::new(body), max_form_bytes).await?;
    let token = form_field(&bytes, FORM_FIELD);
    Ok((token, Body::from(bytes)))
}

fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The whole body, if it is at most `limit` bytes. Trailers are dropped: a
/// URL-encoded form has none.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, CsrfReason> {
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > limit {
        return Err(CsrfReason::FormTooLarge);
    }
    let mut buffer = Vec::with_capacity(declared);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "reading the form body failed");
            CsrfReason::UnreadableBody
        })?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - buffer.len() {
                return Err(CsrfReason::FormTooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// The value of the first field called `name` in a URL-encoded form,
/// decoded by the `form_urlencoded` crate (as the WHATWG URL standard says:
/// `+` is a space, `%XX` a byte, a stray `%` stays; bytes that are not UTF-8
/// become U+FFFD, which no token contains).
fn form_field(form: &[u8], name: &str) -> Option<Vec<u8>> {
    form_urlencoded::parse(form)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_found_and_decoded() {
        assert_eq!(form_field(b"a=1&csrf_token=abc&b=2", "csrf_token"), Some(b"abc".to_vec()));
        assert_eq!(
            form_field(b"csrf_token=first&csrf_token=second", "csrf_token"),
            Some(b"first".to_vec())
        );
        assert_eq!(form_field(b"csrf%5Ftoken=a%2Db+c", "csrf_token"), Some(b"a-b c".to_vec()));
        assert_eq!(form_field(b"csrf_token", "csrf_token"), Some(Vec::new()));
        assert_eq!(form_field(b"xcsrf_token=1&csrf_tokenx=2", "csrf_token"), None);
        assert_eq!(form_field(b"", "csrf_token"), None);
        assert_eq!(form_field(b"csrf_token=%zz%4", "csrf_token"), Some(b"%zz%4".to_vec()));
        assert_eq!(form_field(b"csrf_token=%41%42", "csrf_token"), Some(b"AB".to_vec()));
    }

    #[tokio::test]
    async fn forms_are_read_up_to_the_limit_sized_or_streamed() {
        fn form() -> Body {
            Body::from(vec![b'a'; 100])
        }
        // Streamed: no size hint, so the limit is enforced while reading.
        fn streamed() -> Body {
            Body::from_stream(form().into_data_stream())
        }
        assert_eq!(streamed().size_hint().lower(), 0);
        for body in [form as fn() -> Body, streamed] {
            assert_eq!(read_limited(body(), 100).await.unwrap().len(), 100);
            assert_eq!(read_limited(body(), 99).await, Err(CsrfReason::FormTooLarge));
        }
        assert_eq!(read_limited(Body::empty(), 0).await.unwrap().len(), 0);
    }

    #[test]
    fn content_types() {
        let with = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(CONTENT_TYPE, value.parse().unwrap());
            map
        };
        assert!(is_urlencoded_form(&with("application/x-www-form-urlencoded")));
        assert!(is_urlencoded_form(&with("Application/X-WWW-Form-URLEncoded; charset=UTF-8")));
        assert!(!is_urlencoded_form(&with("multipart/form-data; boundary=x")));
        assert!(!is_urlencoded_form(&with("application/json")));
        assert!(!is_urlencoded_form(&HeaderMap::new()));
    }
}
