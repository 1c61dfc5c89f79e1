//! The Lua scripts behind every multi-step operation. Each runs atomically in
//! Redis and costs one round trip (`EVALSHA`; the script is loaded on the
//! first `NOSCRIPT` reply, for example after a Redis restart).
//!
//! Key layout, for a store prefix `P` (default `session:`):
//!
//! - `P<64 hex>`: one session record, a hash (see `crate::fields`), with a
//!   TTL at the record's deadline (`EXPIREAT`);
//! - `P lock:<64 hex>` (no space): the session's lock, holding a random
//!   token, with the lease as TTL;
//! - `P user:<hex of the user id>` (no space): the user's index, a set of
//!   the record keys' hex parts, with a TTL at the latest deadline among them.
//!
//! Only the hex of a [`StorageKey`](session_core::StorageKey) and the hex of
//! the user id ever end up in a key name. Record keys are exactly the prefix
//! and 64 hex digits, so they never collide with `lock:` or `user:` keys.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// Helpers shared by the scripts. Scripts only call `local` functions
/// (Redis 7 forbids globals).
macro_rules! lua {
    ($body:expr) => {
        concat!(
            r#"
local function index_key(prefix, user)
  return prefix .. 'user:' .. (string.gsub(user, '.', function(c)
    return string.format('%02x', string.byte(c))
  end))
end
local function server_now()
  return tonumber(redis.call('TIME')[1])
end
-- Adds a session to its user's index and keeps the index alive at least
-- until the session's deadline. A session that is already over is not added.
local function index_add(idx, member, at, now)
  if at <= now then return end
  redis.call('SADD', idx, member)
  local ttl = redis.call('TTL', idx)
  if ttl < 0 or now + ttl < at then redis.call('EXPIREAT', idx, at) end
end
"#,
            $body
        )
    };
}

/// `create`: writes the record only if the key is free.
///
/// KEYS: record. ARGV: prefix, member, expire-at, has-user (`0`/`1`), user,
/// then field/value pairs. Returns 1 if written, 0 if the key was taken.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local at = tonumber(ARGV[3])
local now = server_now()
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIREAT', KEYS[1], at)
if ARGV[4] == '1' then index_add(index_key(ARGV[1], ARGV[5]), ARGV[2], at, now) end
return 1
"#
    ))
});

/// `save`, and `save_and_release` when a lock key is given: overwrites the
/// record only if it exists, moves it between user indexes, and releases the
/// lock if the caller still holds it.
///
/// KEYS: record, optionally the lock. ARGV: prefix, member, expire-at,
/// has-user, user, lock token (empty without a lock), then field/value pairs.
/// Returns 1 if saved, 0 if the record is gone (nothing written), -1 if the
/// lock is no longer the caller's (nothing written, lock untouched).
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local lock = KEYS[2]
if lock and redis.call('GET', lock) ~= ARGV[6] then return -1 end
local saved = 0
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  local at = tonumber(ARGV[3])
  local now = server_now()
  local old = redis.call('HGET', KEYS[1], 'user')
  local new = false
  if ARGV[4] == '1' then new = ARGV[5] end
  if old and old ~= new then redis.call('SREM', index_key(ARGV[1], old), ARGV[2]) end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
  redis.call('EXPIREAT', KEYS[1], at)
  if new then index_add(index_key(ARGV[1], new), ARGV[2], at, now) end
  saved = 1
end
if lock then redis.call('DEL', lock) end
return saved
"#
    ))
});

/// `touch`: moves `last_seen`, the idle deadline and the TTL; data untouched.
///
/// KEYS: record. ARGV: prefix, member, expire-at, last-seen, idle deadline.
/// Returns 1 if touched, 0 if the record is gone.
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local at = tonumber(ARGV[3])
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('HSET', KEYS[1], 'seen', ARGV[4], 'idle', ARGV[5])
redis.call('EXPIREAT', KEYS[1], at)
if user then index_add(index_key(ARGV[1], user), ARGV[2], at, server_now()) end
return 1
"#
    ))
});

/// `delete`: removes the record and its user-index entry.
///
/// KEYS: record. ARGV: prefix, member. Returns 1.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  local user = redis.call('HGET', KEYS[1], 'user')
  if user then redis.call('SREM', index_key(ARGV[1], user), ARGV[2]) end
end
redis.call('DEL', KEYS[1])
return 1
"#
    ))
});

/// `list_for_user`: the records in a user's index; drops members whose record
/// is gone (expired natively or deleted).
///
/// KEYS: index. ARGV: prefix. Returns a flat array of member, then the
/// record's `HGETALL` (or nil if the key holds something else).
pub(crate) static LIST_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. m
  local t = redis.call('TYPE', k).ok
  if t == 'none' then
    redis.call('SREM', KEYS[1], m)
  else
    out[#out + 1] = m
    if t == 'hash' then out[#out + 1] = redis.call('HGETALL', k) else out[#out + 1] = false end
  end
end
return out
"#
    ))
});

/// `delete_for_user`: deletes the user's records (only those whose `user`
/// field still names this user) and the index.
///
/// KEYS: index. ARGV: prefix, user. Returns how many records were deleted.
pub(crate) static DELETE_FOR_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. m
  if redis.call('TYPE', k).ok == 'hash' and redis.call('HGET', k, 'user') == ARGV[2] then
    n = n + redis.call('DEL', k)
  end
end
redis.call('DEL', KEYS[1])
return n
"#
    ))
});

/// `delete_expired`: removes index members whose record is gone.
///
/// KEYS: index keys. ARGV: prefix. Returns how many members were removed.
pub(crate) static PRUNE_INDEXES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local removed = 0
for _, idx in ipairs(KEYS) do
  if redis.call('TYPE', idx).ok == 'set' then
    for _, m in ipairs(redis.call('SMEMBERS', idx)) do
      if redis.call('EXISTS', ARGV[1] .. m) == 0 then
        removed = removed + redis.call('SREM', idx, m)
      end
    end
  end
end
return removed
"#
    ))
});

/// `lock_and_load`: takes the lock if it is free and, in the same step, reads
/// the record.
///
/// KEYS: lock, record. ARGV: token, lease in milliseconds. Returns 0 if the
/// lock is taken by someone else; otherwise the record's `HGETALL`, or 1 if
/// there is no record, or 2 if the key holds something other than a hash.
pub(crate) static LOCK_AND_LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local t = redis.call('TYPE', KEYS[2]).ok
if t == 'hash' then return redis.call('HGETALL', KEYS[2]) end
if t == 'none' then return 1 end
return 2
"#,
    )
});

/// Releases a lock if it still holds the caller's token.
///
/// KEYS: lock. ARGV: token. Returns 1 if released, 0 if it was not ours.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// Extends a lock's lease if it still holds the caller's token.
///
/// KEYS: lock. ARGV: token, lease in milliseconds. Returns 1 if renewed, 0
/// if the lock is no longer ours.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#,
    )
});
