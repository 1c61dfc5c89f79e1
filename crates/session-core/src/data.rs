//! The session dict.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// The data of one session: string keys to JSON values, with change tracking.
///
/// Writing a value equal to the one already stored does not mark the data as
/// changed, so a handler that writes back what it read costs no store write.
///
/// ```
/// use session_core::SessionData;
///
/// let mut data = SessionData::default();
/// data.insert("visits", 1_u64)?;
/// assert!(data.is_changed());
/// assert_eq!(data.get::<u64>("visits")?, Some(1));
///
/// data.mark_unchanged();
/// data.insert("visits", 1_u64)?; // same value: still unchanged
/// assert!(!data.is_changed());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionData {
    values: HashMap<String, Value>,
    changed: bool,
}

impl SessionData {
    /// Data holding `values`, marked unchanged (as loaded from a store).
    #[must_use]
    pub fn from_map(values: HashMap<String, Value>) -> Self {
        Self { values, changed: false }
    }

    /// The value under `key`, deserialized as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.values.get(key).map(|value| T::deserialize(value).map_err(Error::from)).transpose()
    }

    /// The raw JSON value under `key`.
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Stores `value` under `key`, returning the previous value.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `value` cannot be represented as JSON (for example a
    /// map with non-string keys). The data is left as it was.
    pub fn insert<T: Serialize>(&mut self, key: &str, value: T) -> Result<Option<Value>, Error> {
        let value = serde_json::to_value(value)?;
        Ok(self.insert_value(key, value))
    }

    /// Stores a raw JSON value under `key`, returning the previous value.
    pub fn insert_value(&mut self, key: &str, value: Value) -> Option<Value> {
        match self.values.get_mut(key) {
            Some(slot) if *slot == value => Some(value),
            // Replaced in place: the key's String is kept, not allocated again.
            Some(slot) => {
                self.changed = true;
                Some(std::mem::replace(slot, value))
            }
            None => {
                self.changed = true;
                self.values.insert(key.to_owned(), value)
            }
        }
    }

    /// Removes `key`, returning its value if it had one.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let removed = self.values.remove(key);
        self.changed |= removed.is_some();
        removed
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.changed |= !self.values.is_empty();
        self.values.clear();
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether anything was inserted, removed or cleared since the data was
    /// loaded or last marked unchanged.
    #[must_use]
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Forgets past changes (after a successful save).
    pub fn mark_unchanged(&mut self) {
        self.changed = false;
    }

    /// The underlying map.
    #[must_use]
    pub fn as_map(&self) -> &HashMap<String, Value> {
        &self.values
    }

    /// Consumes the data, returning the map.
    #[must_use]
    pub fn into_map(self) -> HashMap<String, Value> {
        self.values
    }
}

impl Serialize for SessionData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for SessionData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HashMap::deserialize(deserializer).map(Self::from_map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_changes() {
        let mut data = SessionData::default();
        assert!(!data.is_changed());
        assert_eq!(data.remove("missing"), None);
        data.clear();
        assert!(!data.is_changed(), "removing nothing is no change");

        data.insert("a", "x").unwrap();
        assert!(data.is_changed());
        data.mark_unchanged();

        data.insert("a", "x").unwrap();
        assert!(!data.is_changed(), "an equal value is no change");
        data.insert("a", "y").unwrap();
        assert!(data.is_changed());
        data.mark_unchanged();

        assert_eq!(data.remove("a"), Some(Value::from("y")));
        assert!(data.is_changed());
        data.mark_unchanged();
        data.insert("b", 1).unwrap();
        data.mark_unchanged();
        data.clear();
        assert!(data.is_changed());
        assert!(data.is_empty());
    }

    #[test]
    fn typed_get_reports_wrong_shapes() {
        let mut data = SessionData::default();
        data.insert("n", "not a number").unwrap();
        assert!(matches!(data.get::<u64>("n"), Err(Error::Codec(_))));
        assert_eq!(data.get::<u64>("missing").unwrap(), None);
    }

    #[test]
    fn unrepresentable_values_are_refused() {
        let mut data = SessionData::default();
        let map: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        assert!(data.insert("m", map).is_err());
        assert!(!data.is_changed());
        assert!(data.is_empty());
    }

    #[test]
    fn serializes_as_a_plain_object() {
        let mut data = SessionData::default();
        data.insert("k", vec![1, 2]).unwrap();
        let json = serde_json::to_string(&data).unwrap();
        assert_eq!(json, r#"{"k":[1,2]}"#);
        let back: SessionData = serde_json::from_str(&json).unwrap();
        assert_eq!(back.get::<Vec<u8>>("k").unwrap(), Some(vec![1, 2]));
        assert!(!back.is_changed());
    }
}
