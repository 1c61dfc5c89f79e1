//! [`StorageKeyHasher`]: hashing storage keys for in-memory tables without
//! hashing them again.

use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a [`StorageKey`](crate::StorageKey) by taking eight of its bytes
/// as they are, for the hash maps of in-process stores and lock tables.
///
/// A storage key is a SHA-256 output, so its bytes are already uniformly
/// distributed, and the keys a store holds come from ids the server
/// generated at random (clients cannot choose them), so there is nothing
/// for SipHash's keyed mixing to defend against. (Keys of incoming cookies
/// only enter lock tables, for as long as the lock is held or waited for: a
/// handful at a time, too few to flood.) Bytes 8..16 rather than 0..8:
/// tables sharded by byte 0 would otherwise see the same low bits for every
/// key of a shard and pile them into the same buckets.
///
/// Only meant for `StorageKey`, whose derived `Hash` writes the length (a
/// constant 32) and then the 32 bytes; other input gets a simple byte-wise
/// fold so the hasher is still total.
///
/// ```
/// use std::collections::HashMap;
/// use session_core::{SessionId, StorageKeyHash};
///
/// let mut sessions: HashMap<_, &str, StorageKeyHash> = HashMap::default();
/// sessions.insert(SessionId::random().storage_key(), "a session");
/// assert_eq!(sessions.len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct StorageKeyHasher(u64);

impl Hasher for StorageKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.get(8..16).and_then(|word| <[u8; 8]>::try_from(word).ok()) {
            Some(word) => self.0 ^= u64::from_le_bytes(word),
            None => {
                for &byte in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(byte);
                }
            }
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(8) ^ n as u64;
    }
}

/// The [`BuildHasher`](std::hash::BuildHasher) of [`StorageKeyHasher`].
pub type StorageKeyHash = BuildHasherDefault<StorageKeyHasher>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;
    use crate::{SessionId, StorageKey};

    #[test]
    fn takes_bytes_past_the_shard_byte() {
        let mut bytes = [0u8; 32];
        bytes[8..16].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_le_bytes());
        let hash = StorageKeyHash::default().hash_one(StorageKey::from_bytes(bytes));
        assert_eq!(hash, 0x0123_4567_89ab_cdef ^ 32, "the word, and the length prefix");

        // Keys of one shard (of 64, by byte 0) still spread over the buckets.
        let mut low_bits = HashSet::new();
        let mut seen = 0;
        while seen < 1000 {
            let key = SessionId::random().storage_key();
            if key.as_bytes()[0] & 63 == 0 {
                low_bits.insert(StorageKeyHash::default().hash_one(key) & 0xff);
                seen += 1;
            }
        }
        assert!(low_bits.len() > 200, "{} of 256 low bytes", low_bits.len());

        let mut other = StorageKeyHasher::default();
        other.write(b"short");
        assert_ne!(other.finish(), 0);
    }
}
