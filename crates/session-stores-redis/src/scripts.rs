//! The Lua scripts behind every multi-step operation. Each runs atomically in
//! Redis and costs one round trip (`EVALSHA`; the script is loaded on the
//! first `NOSCRIPT` reply, for example after a Redis restart).
//!
//! Key layout, for a store prefix `P` (default `session:`):
//!
//! - `P{<64 hex>}`: one session record, a string (see `crate::value`), that
//!   expires at the record's deadline (`EXAT`);
//! - `Plock:{<64 hex>}`: the session's lock, holding a random token, with
//!   the lease as TTL;
//! - `Puser:{<hex of the user id>}`: the user's index, a set of the record
//!   keys' 64 hex digits (its members), that expires at the latest deadline
//!   among them.
//!
//! Only the hex of a [`StorageKey`](session_core::StorageKey) and the hex of
//! the user id ever end up in a key name. Record keys are the prefix and
//! `{`, so they never collide with `lock:` or `user:` keys. The braces are
//! Redis Cluster hash tags: a record and its lock hash to the same slot, so
//! the scripts that touch both run on a cluster; a user's index has a slot
//! of its own.
//!
//! The index is kept in step in one of two ways, chosen by the store (the
//! `index` argument of the scripts below):
//! - on one Redis (`index` = `1`), by the record scripts themselves, in the
//!   same atomic step as the record write. Those scripts then touch index
//!   keys derived from the record, which only a single Redis allows;
//! - on a cluster (`index` = `0`), the record scripts touch only the keys
//!   they are given (one slot), and the store updates the index with
//!   separate commands (`INDEX_ADD` before a write, `SREM` after a delete;
//!   see `crate::cluster`).
//!
//! The hot path is `LOCK_AND_LOAD` (`SET NX PX`, `GET`) and `SAVE` with the
//! lock (`GET` of the lock, `SET XX GET EXAT` of the record, which returns
//! the old value, `DEL` of the lock). The user index is only written when a record's user or deadline
//! changes: the save script compares the head of the stored value
//! (`s1 <at> <user> `) with the new one. That keeps the invariant every
//! index reader relies on: a live record with a user is in that user's
//! index, and the index lives at least as long as the record.
//!
//! Keys are read with `redis.pcall`, so a key holding another type (an
//! older layout, something planted) is "not a record" instead of an error
//! halfway through a script.

use std::sync::LazyLock;

use deadpool_redis::redis::{Arg, Cmd, Script};

/// A Lua script: its source, and its SHA-1 for `EVALSHA`.
pub(crate) struct Lua {
    source: &'static str,
    script: Script,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self { source, script: Script::new(source) }
    }

    /// The SHA-1 of the source, as `EVALSHA` takes it.
    pub(crate) fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// `command` (an `EVALSHA` of this script) as an `EVAL` carrying the
    /// source: what to send after a `NOSCRIPT` reply (a Redis that restarted,
    /// flushed its scripts, or a cluster node that never saw the script).
    /// It runs the script and caches it on the node that ran it, in one
    /// round trip, on the node the keys route to.
    pub(crate) fn eval_instead(&self, command: &Cmd) -> Cmd {
        let mut eval = Cmd::with_capacity(command.args_iter().len(), 256 + self.source.len());
        eval.arg("EVAL").arg(self.source);
        for arg in command.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }
}

/// Helpers shared by the scripts. Scripts only call `local` functions
/// (Redis 7 forbids globals).
macro_rules! lua {
    ($body:expr) => {
        concat!(
            r#"
local function index_key(prefix, user)
  return prefix .. 'user:{' .. (string.gsub(user, '.', function(c)
    return string.format('%02x', string.byte(c))
  end)) .. '}'
end
-- The index member of a record key: its 64 hex digits.
local function member_of(key, prefix)
  return string.sub(key, #prefix + 2, -2)
end
-- The record key of an index member.
local function record_of(member, prefix)
  return prefix .. '{' .. member .. '}'
end
-- The head of a record value: its expire-at, its user (false if none),
-- where the user field starts and where the field after it starts; nil if
-- the value is not a record of this format.
local function head(v)
  if type(v) ~= 'string' then return nil end
  local at, u = string.match(v, '^s1 (%d+) ()')
  if not at then return nil end
  if string.sub(v, u, u + 1) == '- ' then return tonumber(at), false, u, u + 2 end
  local n, q = string.match(v, '^(%d+):()', u)
  if not n then return nil end
  n = tonumber(n)
  if string.sub(v, q + n, q + n) ~= ' ' then return nil end
  return tonumber(at), string.sub(v, q, q + n - 1), u, q + n + 1
end
-- Adds a session to its user's index and keeps the index alive at least
-- until the session's deadline. A session that is already over is not added.
local function index_add(idx, member, at)
  local now = tonumber(redis.call('TIME')[1])
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
/// KEYS: record. ARGV: value, expire-at, prefix, index. Returns 1 if
/// written, 0 if the key was taken.
pub(crate) static CREATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then return 0 end
local at, user = head(ARGV[1])
if user and ARGV[4] == '1' then
  index_add(index_key(ARGV[3], user), member_of(KEYS[1], ARGV[3]), tonumber(ARGV[2]))
end
return 1
"#
    ))
});

/// `save`, and `save_and_release` / `save_under_lock` when a lock key is
/// given: overwrites the record only if one exists (`SET XX GET`: one command
/// reads and writes), keeps the user index in step, and, with a lock, writes
/// only if the caller still holds it and then releases it unless asked to
/// keep it.
///
/// KEYS: record, optionally the lock. ARGV: value, expire-at, length of the
/// value's head, prefix, index, then with a lock: its token, `1` to
/// release it (`0` to keep it), and the notice flag of `RELEASE`. Returns 1 if saved, 0 if there is no record
/// (nothing written), -1 if the lock is no longer the caller's (nothing
/// written, lock untouched).
pub(crate) static SAVE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local lock = KEYS[2]
if lock and redis.call('GET', lock) ~= ARGV[6] then return -1 end
-- One command reads the old value and writes the new one, only over an
-- existing key (XX); a key of another type is an error and left alone.
local old = redis.pcall('SET', KEYS[1], ARGV[1], 'XX', 'GET', 'EXAT', ARGV[2])
local saved = 0
if type(old) == 'string' and string.sub(old, 1, 3) ~= 's1 ' then
  -- Not a record of ours: put its value back (rare; its TTL is now ours).
  redis.call('SET', KEYS[1], old, 'KEEPTTL')
elseif type(old) == 'string' then
  local n = tonumber(ARGV[3])
  if ARGV[5] == '1' and string.sub(old, 1, n) ~= string.sub(ARGV[1], 1, n) then
    local member = member_of(KEYS[1], ARGV[4])
    local _, old_user = head(old)
    local _, new_user = head(ARGV[1])
    if old_user and old_user ~= new_user then
      redis.call('SREM', index_key(ARGV[4], old_user), member)
    end
    if new_user then index_add(index_key(ARGV[4], new_user), member, tonumber(ARGV[2])) end
  end
  saved = 1
end
if lock and ARGV[7] == '1' then
  redis.call('DEL', lock)
  if ARGV[8] == '1' then redis.pcall('PUBLISH', lock, '')
  elseif ARGV[8] == '2' then redis.pcall('SPUBLISH', lock, '') end
end
return saved
"#
    ))
});

/// `touch`: moves the expire-at, `seen` and `idle` (and the key's expiry);
/// the rest of the value, data included, is copied unchanged.
///
/// KEYS: record. ARGV: expire-at, last-seen, idle deadline, prefix, index.
/// Returns 1 if touched, 0 if there is no record.
pub(crate) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local v = redis.pcall('GET', KEYS[1])
local at, user, u, p = head(v)
if not at then return 0 end
local created, rest = string.match(v, '^(%-?%d+) %-?%d+ %-?%d+ ()', p)
if not created then return 0 end
redis.call('SET', KEYS[1], 's1 ' .. ARGV[1] .. ' ' .. string.sub(v, u, p - 1) .. created
  .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. string.sub(v, rest), 'EXAT', ARGV[1])
if user and ARGV[5] == '1' and tonumber(ARGV[1]) ~= at then
  index_add(index_key(ARGV[4], user), member_of(KEYS[1], ARGV[4]), tonumber(ARGV[1]))
end
return 1
"#
    ))
});

/// `delete`: removes the record and (with `index`) its user-index entry;
/// with a user as the third argument, only if the record is that user's.
///
/// KEYS: record. ARGV: prefix, index, optionally a user. Returns the user of
/// the deleted record, or 1 if it had none, or 0 if nothing was deleted
/// (no record, or another user's).
pub(crate) static DELETE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local v = redis.pcall('GET', KEYS[1])
local _, user = head(v)
if ARGV[3] and user ~= ARGV[3] then return 0 end
if not v then return 0 end
redis.call('DEL', KEYS[1])
if not user then return 1 end
if ARGV[2] == '1' then redis.call('SREM', index_key(ARGV[1], user), member_of(KEYS[1], ARGV[1])) end
return user
"#
    ))
});

/// `list_for_user`: the records in a user's index; drops members whose record
/// is gone (expired natively or deleted).
///
/// KEYS: index. ARGV: prefix. Returns a flat array of member, then the
/// record's value (or nil if the key holds something other than a string).
pub(crate) static LIST_FOR_USER: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.pcall('GET', record_of(m, ARGV[1]))
  if not v then
    redis.call('SREM', KEYS[1], m)
  else
    out[#out + 1] = m
    if type(v) == 'string' then out[#out + 1] = v else out[#out + 1] = false end
  end
end
return out
"#
    ))
});

/// `delete_for_user`: deletes the user's records (only those whose user
/// field still names this user) and the index.
///
/// KEYS: index. ARGV: prefix, user. Returns how many records were deleted.
pub(crate) static DELETE_FOR_USER: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = record_of(m, ARGV[1])
  local _, user = head(redis.pcall('GET', k))
  if user == ARGV[2] then n = n + redis.call('DEL', k) end
end
redis.call('DEL', KEYS[1])
return n
"#
    ))
});

/// `delete_expired`: removes index members whose record is gone.
///
/// KEYS: index keys. ARGV: prefix. Returns how many members were removed.
pub(crate) static PRUNE_INDEXES: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
local removed = 0
for _, idx in ipairs(KEYS) do
  if redis.call('TYPE', idx).ok == 'set' then
    for _, m in ipairs(redis.call('SMEMBERS', idx)) do
      if redis.call('EXISTS', record_of(m, ARGV[1])) == 0 then
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
/// lock is taken by someone else; otherwise the record's value, or 1 if
/// there is no record, or 2 if the key holds something other than a string.
pub(crate) static LOCK_AND_LOAD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local v = redis.pcall('GET', KEYS[2])
if not v then return 1 end
if type(v) == 'table' then return 2 end
return v
"#,
    )
});

/// Releases a lock if it still holds the caller's token, and tells the
/// waiters with a release notice on the lock key's own channel (see
/// `wakeups.rs`) when the notice flag `ARGV[2]` asks for one: `1` publishes
/// it, `2` publishes it on the shard channel (Redis Cluster: the notice
/// stays in the lock's slot instead of reaching every node), `0` not at all.
/// The notice is `pcall`ed: a Redis user without the right to publish there
/// keeps working, its waiters polling.
///
/// KEYS: lock. ARGV: token, notice flag. Returns 1 if released, 0 if it was
/// not ours.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.pcall('PUBLISH', KEYS[1], '')
elseif ARGV[2] == '2' then redis.pcall('SPUBLISH', KEYS[1], '') end
return 1
"#,
    )
});

/// Extends a lock's lease if it still holds the caller's token.
///
/// KEYS: lock. ARGV: token, lease in milliseconds. Returns 1 if renewed, 0
/// if the lock is no longer ours.
pub(crate) static RENEW: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#,
    )
});

/// Adds a session to a user's index and keeps the index alive until the
/// session's deadline (what the record scripts do with `index` = `1`).
///
/// KEYS: index. ARGV: member, expire-at. Returns 1.
#[cfg(feature = "cluster")]
pub(crate) static INDEX_ADD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(lua!(
        r#"
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]))
return 1
"#
    ))
});
