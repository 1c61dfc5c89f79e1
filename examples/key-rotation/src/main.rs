//! Client-side sessions with key rotation.
//!
//! The whole session (a visit counter) travels in the cookie, sealed with the
//! first key of `SESSION_KEYS`; every key in the list opens cookies, and a
//! cookie opened with an older key is reissued under the first one.
//!
//! ```text
//! cargo xtask keygen                                   # prints a new key (= `-- keygen`)
//! SESSION_KEYS=<new> cargo run -p key-rotation         # serves http://127.0.0.1:3000
//! SESSION_KEYS=<newer>,<new> cargo run -p key-rotation # rotate: old cookies still work
//! SESSION_FORMAT=jwt ...                               # aead (default), fernet, jwt or signed
//! ```
//!
//! Rotation in production: deploy with `new,old` (every server can open both,
//! seals with new); once the longest session lifetime has passed, drop `old`.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::routing::get;
use session_axum::cookie_store::{AeadFormat, FernetFormat, JwtFormat, Key, Keyring, SignedFormat};
use session_axum::{Session, SessionError, SessionLayer};

/// Counts this browser's visits; the count lives in the cookie.
async fn visit(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", visits).await?;
    Ok(visits.to_string())
}

/// The cookie formats this example can seal with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Aead,
    Fernet,
    Jwt,
    Signed,
}

impl Format {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "aead" => Ok(Self::Aead),
            "fernet" => Ok(Self::Fernet),
            "jwt" => Ok(Self::Jwt),
            "signed" => Ok(Self::Signed),
            other => Err(format!("SESSION_FORMAT={other:?}: expected aead, fernet, jwt or signed")),
        }
    }
}

/// `SESSION_KEYS`: comma-separated base64url keys, the primary first.
fn parse_keyring(keys: &str) -> Result<Keyring, String> {
    let mut parsed = keys.split(',').map(str::trim).filter(|key| !key.is_empty()).enumerate().map(
        |(position, key)| {
            key.parse::<Key>()
                .map_err(|error| format!("SESSION_KEYS key #{}: {error}", position + 1))
        },
    );
    let primary = parsed.next().ok_or("SESSION_KEYS holds no key")??;
    parsed.try_fold(Keyring::new(primary), |ring, key| Ok(ring.with_fallback(key?)))
}

fn app(format: Format, keyring: Keyring) -> Router {
    let sessions = match format {
        Format::Aead => SessionLayer::client_side(AeadFormat::new(keyring)),
        Format::Fernet => SessionLayer::client_side(FernetFormat::new(keyring)),
        Format::Jwt => SessionLayer::client_side(JwtFormat::hs256(keyring)),
        Format::Signed => SessionLayer::client_side(SignedFormat::new(keyring)),
    };
    Router::new().route("/", get(visit)).layer(sessions)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("keygen") {
        // A fresh 32-byte key from the OS CSPRNG, base64url: valid for every format.
        println!("{}", Key::generate().to_base64());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let format = Format::parse(&std::env::var("SESSION_FORMAT").unwrap_or_else(|_| "aead".into()))?;
    let keyring = match std::env::var("SESSION_KEYS") {
        Ok(keys) => parse_keyring(&keys)?,
        Err(_) => {
            let key = Key::generate();
            println!("SESSION_KEYS is not set; using a fresh key (cookies die with this process):");
            println!("  SESSION_KEYS={}", key.to_base64());
            Keyring::new(key)
        }
    };
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port:?} is not a port: {e}"))?,
        Err(_) => 3000,
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("key-rotation ({format:?}, {} key(s)) on http://{address}/", keyring.len());
    axum::serve(listener, app(format, keyring))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// (body, the `name=value` of a reissued cookie).
    async fn visit(app: &Router, cookie: Option<&str>) -> (String, Option<String>) {
        let mut request = axum::http::Request::get("/");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let set = response
            .headers()
            .get("set-cookie")
            .map(|value| value.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), set)
    }

    #[tokio::test]
    async fn rotation_keeps_old_cookies_and_reissues_them_under_the_new_key() {
        let (a, b) = (Key::generate(), Key::generate());
        let ring = |keys: &[&Key]| {
            parse_keyring(&keys.iter().map(|k| k.to_base64()).collect::<Vec<_>>().join(","))
        };
        for format in [Format::Aead, Format::Fernet, Format::Jwt, Format::Signed] {
            let before = app(format, ring(&[&a]).unwrap());
            let (count, under_a) = visit(&before, None).await;
            assert_eq!(count, "1");
            let under_a = under_a.unwrap();

            // Rotated: B seals, A still opens. The old cookie counts on and
            // comes back sealed under B.
            let rotated = app(format, ring(&[&b, &a]).unwrap());
            let (count, under_b) = visit(&rotated, Some(&under_a)).await;
            assert_eq!(count, "2", "{format:?}");
            let under_b = under_b.unwrap();

            // A retired: the old cookie is refused, the reissued one works.
            let retired = app(format, ring(&[&b]).unwrap());
            assert_eq!(visit(&retired, Some(&under_a)).await.0, "1", "{format:?}: A is gone");
            assert_eq!(visit(&retired, Some(&under_b)).await.0, "3", "{format:?}");
        }
    }

    #[test]
    fn bad_key_lists_are_refused_clearly() {
        assert!(parse_keyring("").unwrap_err().contains("no key"));
        let error =
            parse_keyring(&format!("{},not-a-key", Key::generate().to_base64())).unwrap_err();
        assert!(error.contains("#2"), "{error}");
        assert!(!error.contains("not-a-key"), "errors never echo key material: {error}");
        assert_eq!(Format::parse("jwt"), Ok(Format::Jwt));
        assert_eq!(Format::parse("aead"), Ok(Format::Aead));
        assert!(Format::parse("rot13").is_err());
    }
}
