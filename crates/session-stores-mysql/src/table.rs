//! Table names: validation, quoting, and the lock names derived from them.

use std::fmt;
use std::fmt::Write as _;

use session_core::StorageKey;
use session_stores_sql::{InvalidTableName, QualifiedName, fnv1a64};

use crate::lock::LockName;

/// How many bytes of the storage key a lock name carries (as hex): 160 bits
/// of a SHA-256 keep two sessions from sharing a lock, and the name within
/// MySQL's 64 characters.
const LOCK_KEY_BYTES: usize = 20;

/// A validated table name, optionally qualified by its database; by
/// default [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    name: QualifiedName,
    /// The start of every lock name of this table (see [`lock_name`](Self::lock_name)).
    lock_prefix: String,
}

impl Default for TableName {
    fn default() -> Self {
        Self::new(QualifiedName::default())
    }
}

impl TableName {
    pub(crate) fn parse(name: &str) -> Result<Self, InvalidTableName> {
        QualifiedName::parse(name).map(Self::new)
    }

    fn new(name: QualifiedName) -> Self {
        let lock_prefix = format!("session_{:08x}_", fnv1a64(name.to_string().as_bytes()) as u32);
        Self { name, lock_prefix }
    }

    /// The name for SQL: each part in backquotes (so it is used exactly as
    /// given; the parts hold no backquote).
    pub(crate) fn quoted(&self) -> String {
        self.name.quoted_with(|part| format!("`{part}`"))
    }

    /// The `GET_LOCK` name of the session stored under `key` in this table.
    ///
    /// Lock names are server-wide (every database shares them), so the name
    /// starts with a hash of the table's name, then 160 bits of the key in
    /// hex: 57 characters, within MySQL's limit of 64 (MariaDB has none).
    pub(crate) fn lock_name(&self, key: &StorageKey) -> LockName {
        let mut name = String::with_capacity(self.lock_prefix.len() + 2 * LOCK_KEY_BYTES);
        name.push_str(&self.lock_prefix);
        for byte in &key.as_bytes()[..LOCK_KEY_BYTES] {
            let _ = write!(name, "{byte:02x}");
        }
        LockName(name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_database_qualified_names() {
        for good in ["sessions", "_s", "S1", "app.sessions", &"a".repeat(63)] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        assert_eq!(TableName::parse("app.Sessions").unwrap().quoted(), "`app`.`Sessions`");
        assert!(TableName::parse(crate::DEFAULT_TABLE_NAME).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        let long = "a".repeat(64);
        for bad in
            ["", ".", "a.", ".a", "a.b.c", "1abc", "x; DROP TABLE y", "`q`", "a-b", "a b", &long]
        {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lock_names_fit_and_differ_by_table_and_key() {
        let key = StorageKey::from_bytes([0xab; 32]);
        let other_key = StorageKey::from_bytes([0xcd; 32]);
        let long = TableName::parse(&format!("{}.{}", "d".repeat(63), "t".repeat(63))).unwrap();
        let name = long.lock_name(&key).0;
        assert_eq!(name.len(), 57, "{name}");
        assert!(name.ends_with(&"ab".repeat(20)), "{name}");
        let a = TableName::parse("a").unwrap();
        assert_ne!(a.lock_name(&key).0, TableName::parse("b").unwrap().lock_name(&key).0);
        assert_ne!(a.lock_name(&key).0, a.lock_name(&other_key).0);
        assert_eq!(a.lock_name(&key).0, TableName::parse("a").unwrap().lock_name(&key).0);
    }
}
