//! Table names: validation and quoting.

/// The longest identifier accepted: PostgreSQL's limit, which SQLite
/// tables follow too so a name works on either.
pub const MAX_IDENT: usize = 63;

/// A table name was refused by the store's `with_table_name`.
///
/// ```
/// use session_stores_sql::check_identifier;
///
/// let err = check_identifier("x; DROP TABLE y", "x; DROP TABLE y").unwrap_err();
/// assert!(err.to_string().contains("invalid table name"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {shown:?}: {reason}")]
pub struct InvalidTableName {
    /// The refused name, cut to a readable length.
    shown: String,
    reason: &'static str,
}

impl InvalidTableName {
    /// Refuses `name` for `reason`.
    #[doc(hidden)]
    #[must_use]
    pub fn new(name: &str, reason: &'static str) -> Self {
        Self { shown: name.chars().take(80).collect(), reason }
    }

    /// Why the name was refused.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Checks that `part` of the table name `name` is one identifier matching
/// `[A-Za-z_][A-Za-z0-9_]{0,62}`.
///
/// # Errors
///
/// [`InvalidTableName`] naming the whole `name` if it does not.
pub fn check_identifier(name: &str, part: &str) -> Result<(), InvalidTableName> {
    let mut bytes = part.bytes();
    match bytes.next() {
        None => return Err(InvalidTableName::new(name, "empty identifier")),
        Some(first) if !(first.is_ascii_alphabetic() || first == b'_') => {
            return Err(InvalidTableName::new(
                name,
                "an identifier must start with a letter or `_`",
            ));
        }
        Some(_) => {}
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(InvalidTableName::new(name, "only ASCII letters, digits and `_` are allowed"));
    }
    if part.len() > MAX_IDENT {
        return Err(InvalidTableName::new(name, "an identifier is at most 63 characters"));
    }
    Ok(())
}

/// The optional qualifier and the table of `name` (`table` or
/// `qualifier.table`, a schema in PostgreSQL, a database in MySQL), each
/// checked with [`check_identifier`].
///
/// # Errors
///
/// [`InvalidTableName`] for more than one `.`, or a part that is not one
/// identifier.
///
/// ```
/// use session_stores_sql::split_qualified;
///
/// assert_eq!(split_qualified("app.sessions").unwrap(), (Some("app"), "sessions"));
/// assert_eq!(split_qualified("sessions").unwrap(), (None, "sessions"));
/// assert!(split_qualified("a.b.c").is_err());
/// ```
pub fn split_qualified(name: &str) -> Result<(Option<&str>, &str), InvalidTableName> {
    let mut parts = name.split('.');
    let (qualifier, table) = match (parts.next(), parts.next(), parts.next()) {
        (Some(table), None, None) => (None, table),
        (Some(qualifier), Some(table), None) => (Some(qualifier), table),
        _ => {
            return Err(InvalidTableName::new(name, "at most one `.` (schema.table) is allowed"));
        }
    };
    if let Some(qualifier) = qualifier {
        check_identifier(name, qualifier)?;
    }
    check_identifier(name, table)?;
    Ok((qualifier, table))
}

/// FNV-1a: tiny, and stable across Rust releases (unlike `DefaultHasher`),
/// which matters for names written into the database.
///
/// ```
/// assert_eq!(session_stores_sql::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// ```
#[must_use]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `identifier` double-quoted for SQL, so it is used exactly as given, case
/// included. Only for identifiers that passed [`check_identifier`] (which
/// contain no quotes).
#[must_use]
pub fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers() {
        for good in ["sessions", "_s", "S1", &"a".repeat(63)] {
            assert!(check_identifier(good, good).is_ok(), "{good}");
        }
        assert_eq!(quote("Sessions"), r#""Sessions""#);
    }

    #[test]
    fn refuses_everything_else() {
        let long = "a".repeat(64);
        for bad in [
            "",
            ".",
            "a.b",
            "1abc",
            "x; DROP TABLE y",
            "\"quoted\"",
            "a-b",
            "a b",
            "ä",
            "a\0",
            &long,
        ] {
            assert!(check_identifier(bad, bad).is_err(), "{bad:?}");
        }
    }
}
