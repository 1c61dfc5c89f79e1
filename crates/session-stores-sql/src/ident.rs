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
