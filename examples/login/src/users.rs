//! The user database: in memory, passwords hashed with Argon2id.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};
use session_axum::{AuthUser, UserLoader};

/// A user of the site.
#[derive(Clone)]
pub struct User {
    /// Never reused, even after the user is deleted.
    pub id: u64,
    /// The login name.
    pub username: String,
    /// The Argon2id PHC string (`$argon2id$v=19$m=...`): salt, parameters
    /// and hash together.
    password_hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("username", &self.username).finish()
    }
}

impl AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    /// The password hash changes (new salt) on every password change, which
    /// ends the user's other sessions.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// Why a password could not be hashed or a user not created.
#[derive(Debug)]
pub enum UserError {
    /// That name is taken.
    Taken,
    /// Passwords are 8 to 1024 bytes long.
    BadPassword,
    /// The password hasher failed (no OS randomness for the salt, ...).
    Hashing(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Taken => f.write_str("that user name is taken"),
            Self::BadPassword => f.write_str("passwords must be 8 to 1024 bytes long"),
            Self::Hashing(error) => write!(f, "password hashing failed: {error}"),
        }
    }
}

impl std::error::Error for UserError {}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, User>,
    next_id: u64,
}

/// Every user, shared by the handlers and the auth layer.
///
/// Hashing and verifying passwords is deliberately slow (tens of
/// milliseconds, more in debug builds); call [`Users::verify`],
/// [`Users::create`] and [`Users::set_password`] from
/// `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Users {
    table: Arc<RwLock<Table>>,
    /// A hash to verify against when the user name is unknown, so a failed
    /// login takes as long whether or not the name exists.
    dummy_hash: Arc<str>,
    /// Cost of new hashes. Verifying uses the cost recorded in each hash.
    params: Params,
}

impl Users {
    /// An empty database.
    ///
    /// # Errors
    ///
    /// If the password hasher fails.
    pub fn new() -> Result<Self, UserError> {
        Self::with_params(Params::default())
    }

    /// An empty database hashing new passwords at the given Argon2 cost.
    /// The default ([`Users::new`]) is OWASP's recommendation; tests use a
    /// much cheaper one to run fast in debug builds.
    ///
    /// # Errors
    ///
    /// If the password hasher fails.
    pub fn with_params(params: Params) -> Result<Self, UserError> {
        let dummy_hash = hash(&params, "not anybody's password")?;
        Ok(Self { table: Arc::default(), dummy_hash: dummy_hash.into(), params })
    }

    /// Adds a user.
    ///
    /// # Errors
    ///
    /// If the name is taken or the password is unacceptable.
    pub fn create(&self, username: &str, password: &str) -> Result<User, UserError> {
        let password_hash = hash(&self.params, password)?;
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.by_id.values().any(|user| user.username == username) {
            return Err(UserError::Taken);
        }
        table.next_id += 1;
        let user = User { id: table.next_id, username: username.to_owned(), password_hash };
        table.by_id.insert(user.id, user.clone());
        Ok(user)
    }

    /// The user with this name and password, if both match.
    #[must_use]
    pub fn verify(&self, username: &str, password: &str) -> Option<User> {
        let user = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .values()
            .find(|user| user.username == username)
            .cloned();
        let stored = user.as_ref().map_or(&*self.dummy_hash, |user| user.password_hash.as_str());
        let matches = Argon2::default().verify_password(password.as_bytes(), stored).is_ok();
        user.filter(|_| matches)
    }

    /// Sets a new password; returns the updated user.
    ///
    /// # Errors
    ///
    /// If the password is unacceptable.
    pub fn set_password(&self, id: u64, password: &str) -> Result<Option<User>, UserError> {
        let password_hash = hash(&self.params, password)?;
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        Ok(table.by_id.get_mut(&id).map(|user| {
            user.password_hash = password_hash;
            user.clone()
        }))
    }

    /// The user with this id.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<User> {
        self.table.read().unwrap_or_else(PoisonError::into_inner).by_id.get(&id).cloned()
    }
}

impl UserLoader<User> for Users {
    type Error = Infallible;

    async fn load(&self, id: &u64) -> Result<Option<User>, Infallible> {
        Ok(self.get(*id))
    }
}

/// Argon2id at the given cost, with a random salt.
fn hash(params: &Params, password: &str) -> Result<String, UserError> {
    if !(8..=1024).contains(&password.len()) {
        return Err(UserError::BadPassword);
    }
    Argon2::from(params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| UserError::Hashing(error.to_string()))
}

/// A random password of 20 letters and digits (about 119 bits).
///
/// # Errors
///
/// If the operating system has no randomness to give.
pub fn random_password() -> Result<String, UserError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|error| UserError::Hashing(error.to_string()))?;
    // 256 is not a multiple of the alphabet's length; the bias is harmless
    // for a demo password of this length.
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect())
}
