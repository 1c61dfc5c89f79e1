//! Table names: validation, quoting, and the names derived from them.

use std::fmt;

use session_stores_sql::{InvalidTableName, MAX_IDENT, QualifiedName, fnv1a64, quote};

/// A validated, possibly schema-qualified table name; by default
/// [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME).
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct TableName(QualifiedName);

impl TableName {
    pub(crate) fn parse(name: &str) -> Result<Self, InvalidTableName> {
        QualifiedName::parse(name).map(Self)
    }

    /// The name for SQL: each part double-quoted (so it is used exactly as
    /// given, case included).
    pub(crate) fn quoted(&self) -> String {
        self.0.quoted_with(quote)
    }

    /// A quoted, unqualified name for an object belonging to this table (an
    /// index), at most 63 characters, distinct for distinct tables and
    /// suffixes.
    pub(crate) fn derived(&self, suffix: &str) -> String {
        let table = self.0.table();
        let plain = format!("{table}_{suffix}");
        if plain.len() <= MAX_IDENT {
            return format!("\"{plain}\"");
        }
        // Too long: PostgreSQL would silently truncate it, and two derived
        // names could collide. Shorten and add a stable hash of the full name.
        let hash = fnv1a64(self.to_string().as_bytes()) as u32;
        let keep = MAX_IDENT - suffix.len() - 10;
        format!("\"{}_{hash:08x}_{suffix}\"", &table[..keep])
    }

    /// A quoted name for a routine belonging to this table, in the table's
    /// schema (if it names one): like [`derived`](Self::derived), qualified.
    pub(crate) fn routine(&self, suffix: &str) -> String {
        self.qualified(suffix)
    }

    /// A quoted name for a table or routine belonging to this table, in the
    /// table's schema (if it names one): like [`derived`](Self::derived),
    /// qualified.
    pub(crate) fn qualified(&self, suffix: &str) -> String {
        match self.0.qualifier() {
            Some(schema) => format!("{}.{}", quote(schema), self.derived(suffix)),
            None => self.derived(suffix),
        }
    }

    /// A stable 64-bit number for this table, for the migration lock.
    pub(crate) fn lock_id(&self) -> i64 {
        let text = format!("session-stores-postgres migrate {self}");
        fnv1a64(text.as_bytes()).cast_signed()
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_schema_qualified_names() {
        for good in ["sessions", "_s", "S1", "app.sessions", &"a".repeat(63)] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        assert_eq!(TableName::parse("app.Sessions").unwrap().quoted(), r#""app"."Sessions""#);
    }

    #[test]
    fn the_default_name_is_valid() {
        assert!(TableName::parse(crate::DEFAULT_TABLE_NAME).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        let long = "a".repeat(64);
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "1abc",
            "x; DROP TABLE y",
            "\"quoted\"",
            "a-b",
            "a b",
            "ä",
            "a\0",
            &long,
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names_fit_and_differ() {
        let long_a = TableName::parse(&"a".repeat(63)).unwrap();
        let long_b = TableName::parse(&format!("{}b", "a".repeat(62))).unwrap();
        let a = long_a.derived("expires_at_idx");
        assert!(a.len() <= MAX_IDENT + 2, "{a}");
        assert_ne!(a, long_b.derived("expires_at_idx"));
        assert_ne!(a, long_a.derived("user_id_idx"));
        assert_eq!(TableName::parse("s.t").unwrap().derived("x_idx"), "\"t_x_idx\"");
        assert_eq!(TableName::parse("s.t").unwrap().routine("p"), "\"s\".\"t_p\"");
        assert_eq!(TableName::parse("t").unwrap().routine("p"), "\"t_p\"");
    }
}
