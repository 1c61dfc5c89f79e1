//! Table names: validation and quoting.

use std::fmt;

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

/// A checked table name: `table`, or `qualifier.table` (a schema in
/// PostgreSQL, a database in MySQL), each part one identifier (see
/// [`check_identifier`]). Shown (`Display`, `Debug`) as given.
///
/// ```
/// use session_stores_sql::{QualifiedName, quote};
///
/// let name = QualifiedName::parse("app.Sessions").unwrap();
/// assert_eq!((name.qualifier(), name.table()), (Some("app"), "Sessions"));
/// assert_eq!(name.quoted_with(quote), r#""app"."Sessions""#);
/// assert_eq!(name.to_string(), "app.Sessions");
/// assert!(QualifiedName::parse("a.b.c").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct QualifiedName {
    qualifier: Option<String>,
    table: String,
}

impl QualifiedName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] for more than one `.`, or a part that is not one
    /// identifier.
    pub fn parse(name: &str) -> Result<Self, InvalidTableName> {
        let mut parts = name.split('.');
        let (qualifier, table) = match (parts.next(), parts.next(), parts.next()) {
            (Some(table), None, None) => (None, table),
            (Some(qualifier), Some(table), None) => (Some(qualifier), table),
            _ => {
                return Err(InvalidTableName::new(
                    name,
                    "at most one `.` (schema.table) is allowed",
                ));
            }
        };
        if let Some(qualifier) = qualifier {
            check_identifier(name, qualifier)?;
        }
        check_identifier(name, table)?;
        Ok(Self { qualifier: qualifier.map(str::to_owned), table: table.to_owned() })
    }

    /// The schema or database, if the name gives one.
    #[must_use]
    pub fn qualifier(&self) -> Option<&str> {
        self.qualifier.as_deref()
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The name for SQL: each part quoted by `quote` (the dialect's, such as
    /// [`quote`]), joined by `.`.
    #[must_use]
    pub fn quoted_with(&self, quote: impl Fn(&str) -> String) -> String {
        match &self.qualifier {
            Some(qualifier) => format!("{}.{}", quote(qualifier), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

/// [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME), unqualified.
impl Default for QualifiedName {
    fn default() -> Self {
        Self { qualifier: None, table: crate::DEFAULT_TABLE_NAME.to_owned() }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(qualifier) => write!(f, "{qualifier}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl fmt::Debug for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
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
    fn the_default_name_is_valid() {
        assert_eq!(QualifiedName::parse(crate::DEFAULT_TABLE_NAME), Ok(QualifiedName::default()));
    }

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
