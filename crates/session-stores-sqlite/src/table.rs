//! Table names: validation and quoting.

use std::fmt;

/// The longest table name accepted (the same limit as PostgreSQL's).
const MAX_IDENT: usize = 63;

/// A table name was refused by
/// [`SqliteStore::with_table_name`](crate::SqliteStore::with_table_name).
///
/// A name matches `[A-Za-z_][A-Za-z0-9_]{0,62}` and does not start with
/// `sqlite_` (reserved by SQLite).
///
/// ```
/// use session_stores_sqlite::SqliteStore;
/// # async fn demo(pool: session_stores_sqlite::SqlitePool) {
/// let err = SqliteStore::new(pool).with_table_name("x; DROP TABLE y").unwrap_err();
/// assert!(err.to_string().contains("invalid table name"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {shown:?}: {reason}")]
pub struct InvalidTableName {
    /// The refused name, cut to a readable length.
    shown: String,
    reason: &'static str,
}

impl InvalidTableName {
    fn new(name: &str, reason: &'static str) -> Self {
        Self { shown: name.chars().take(80).collect(), reason }
    }

    /// Why the name was refused.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// A validated table name.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableName(String);

impl TableName {
    pub(crate) fn parse(name: &str) -> Result<Self, InvalidTableName> {
        let mut bytes = name.bytes();
        match bytes.next() {
            None => return Err(InvalidTableName::new(name, "empty name")),
            Some(first) if !(first.is_ascii_alphabetic() || first == b'_') => {
                return Err(InvalidTableName::new(name, "a name must start with a letter or `_`"));
            }
            Some(_) => {}
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(InvalidTableName::new(
                name,
                "only ASCII letters, digits and `_` are allowed",
            ));
        }
        if name.len() > MAX_IDENT {
            return Err(InvalidTableName::new(name, "a name is at most 63 characters"));
        }
        if name.len() >= 7 && name[..7].eq_ignore_ascii_case("sqlite_") {
            return Err(InvalidTableName::new(
                name,
                "names starting with `sqlite_` are reserved by SQLite",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// A name known to be valid (a constant of this crate).
    pub(crate) fn unchecked(name: &str) -> Self {
        debug_assert!(Self::parse(name).is_ok(), "{name}");
        Self(name.to_owned())
    }

    /// The name for SQL, double-quoted (so it is used exactly as given).
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// A quoted name for an object belonging to this table (an index).
    pub(crate) fn derived(&self, suffix: &str) -> String {
        format!("\"{}_{suffix}\"", self.0)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers() {
        for good in ["sessions", "_s", "S1", "sqlitesessions", &"a".repeat(63)] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        assert!(TableName::parse(crate::store::DEFAULT_TABLE_NAME).is_ok());
        assert_eq!(TableName::parse("Sessions").unwrap().quoted(), r#""Sessions""#);
    }

    #[test]
    fn refuses_everything_else() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "main.sessions",
            "1abc",
            "x; DROP TABLE y",
            "\"quoted\"",
            "a-b",
            "a b",
            "ä",
            "a\0",
            "sqlite_master",
            "SQLITE_x",
            &long,
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
