//! Table names: validation and quoting.

use std::fmt;

use session_stores_sql::{InvalidTableName, check_identifier, quote};

/// A validated table name.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableName(String);

impl TableName {
    pub(crate) fn parse(name: &str) -> Result<Self, InvalidTableName> {
        check_identifier(name, name)?;
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
        quote(&self.0)
    }

    /// A quoted name for an object belonging to this table (an index).
    pub(crate) fn derived(&self, suffix: &str) -> String {
        quote(&format!("{}_{suffix}", self.0))
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
        assert!(TableName::parse(crate::DEFAULT_TABLE_NAME).is_ok());
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
