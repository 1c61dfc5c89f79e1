//! Client-side sessions: the whole session travels in the cookie.
//!
//! Each format implements [`session_core::CookieFormat`]: it seals a
//! session's data, deadlines, user and expiry override, together with the
//! cookie's name, into a cookie value, and opens such a value only if it is
//! authentic, sealed for that cookie name, and unexpired.
//!
//! | format | feature | the client can read it | | pick it |
//! |---|---|---|---|---|
//! | [`AeadFormat`] | `aead` | no (encrypted and authenticated) | AES-256-GCM | by default, for a new site |
//! | [`FernetFormat`] | `fernet` | no (encrypted and authenticated) | Fernet spec, AES-128-CBC + HMAC-SHA256 | to share cookies with Python services (`cryptography`'s Fernet) |
//! | [`JwtFormat`] | `jwt` | **yes** (signed only) | HS256, or EdDSA (Ed25519) | to share cookies with other JWT readers |
//! | [`SignedFormat`] | `signed` | **yes** (signed only) | base64url JSON + HMAC-SHA256 | when nothing in the session is secret |
//!
//! No feature is on by default. Applications enable them through
//! `session-axum`'s `cookie-aead`, `cookie-fernet`, `cookie-jwt` and
//! `cookie-signed` features.
//!
//! # Keys
//!
//! Every format takes a [`Keyring`] (the JWT format can use Ed25519 keys
//! instead): one primary key that seals and any number of fallback keys that
//! still open. A value opened with a fallback key comes back with
//! [`Opened::needs_reseal`](session_core::Opened::needs_reseal) set, and the
//! session layer reissues it under the primary key. Keys are 32 random bytes
//! written as base64url ([`Key::generate`], [`Key::to_base64`]). Use a
//! different key per format and per application. (The AEAD format derives
//! its AES key from the keyring key with a label of its own, so it never
//! shares a key with another format; the others use the key as it is, as
//! their specifications say.)
//!
//! # What client-side sessions cannot do
//!
//! - **Revocation.** There is no server-side state: a copied cookie stays
//!   valid until its sealed deadline, and logging out only clears the
//!   browser's copy. Keep the idle timeout short, or rotate the key to end
//!   every session at once.
//! - **Locking.** Concurrent requests of one session are last-writer-wins.
//! - **Size.** The session is in every request, and a large session makes a
//!   large cookie: the layer refuses to set one over 4096 bytes (name and
//!   value), and values over 4096 bytes are ignored unread when they arrive.
//!   Keep data small (ids, not objects).
//!
//! # What is sealed
//!
//! One JSON object, the same for the Fernet, JWT and signed formats: `aud`
//! (the cookie name), `iat` (created), `lst` (last seen), `exp` (the earlier
//! deadline), `idl` (idle deadline), `abs` (absolute deadline), `usr`
//! (user), `xpy` (expiry override) and `dat` (the data). Times are Unix
//! seconds. The AEAD format seals the same in a compact form (the times as
//! fixed-width integers, the cookie name as associated data; see
//! [`AeadFormat`]), and every format makes the same checks when it opens a
//! value. The record's key and version are not sealed: an opened record has
//! version 0 and an all-zero [`StorageKey`](session_core::StorageKey), the
//! key the layer gives new client-side sessions (there is no store to key).
//!
//! # Bad cookies
//!
//! `open` never panics and never errors: a value that is too long (checked
//! before any decoding), malformed, forged, sealed by an unknown key, for
//! another cookie name, or expired is simply no session. The reason is
//! logged with `tracing` at debug level, without the value.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link every format; without all features some links have no target.
#![cfg_attr(
    not(all(feature = "aead", feature = "fernet", feature = "jwt", feature = "signed")),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(feature = "aead")]
mod aead;
#[cfg(any(feature = "aead", feature = "fernet", feature = "jwt", feature = "signed"))]
mod claims;
#[cfg(any(feature = "aead", feature = "fernet", feature = "jwt"))]
mod error;
#[cfg(feature = "fernet")]
mod fernet;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(any(feature = "aead", feature = "jwt", feature = "signed"))]
mod mac;
#[cfg(feature = "signed")]
mod signed;

#[cfg(feature = "aead")]
#[cfg_attr(docsrs, doc(cfg(feature = "aead")))]
pub use aead::AeadFormat;
#[cfg(feature = "fernet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fernet")))]
pub use fernet::FernetFormat;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{Ed25519KeyError, JwtFormat};
#[doc(no_inline)]
pub use session_core::{InvalidKey, Key, Keyring};
#[cfg(feature = "signed")]
#[cfg_attr(docsrs, doc(cfg(feature = "signed")))]
pub use signed::SignedFormat;
