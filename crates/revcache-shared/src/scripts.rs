//! The Lua scripts that make the shared tier's updates atomic in Redis.
//!
//! - `STORE` writes an entry only if nothing it shows (its target, its
//!   tags, a prefix of its target) was invalidated since its fill's ticket
//!   and no newer one (by the upstream's `Date`) is stored for its key and
//!   variant, and indexes it by variant, target, route and tag.
//! - `PUBLISH` bumps the sequence and the slots of what an invalidation
//!   reaches, deletes the entries it reaches (through the indexes),
//!   appends it to the stream, and keeps the prefix history short (a store
//!   older than what it forgot is refused).
//! - `TICKET` reads the sequence and the epoch (made when there is none:
//!   Redis started empty), so a fill that began before Redis lost its
//!   data is never stored after.
//! - `LOOKUP` reads every variant of a key in one round trip.
//! - `CLAIM` takes a fetch lock unless another node holds it, and reads
//!   every variant of its key in the same step.
//! - `UNLOCK` releases a fetch lock only if this node still holds it.
//! - `LEASE` takes or renews a lease (with the state its holder reports)
//!   unless another node holds it; `RELEASE` gives it up.
//!
//! The scripts touch keys they find in index sets, which is fine on one
//! Redis or Valkey server, and in a Redis Cluster because every key of one
//! cache carries the same hash tag (see `connection`).

use std::sync::LazyLock;

use redis::Script;

pub static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 slots, 2 prefixes, 3 prefix floor, 4 entry, 5 variants,
--       6 route members, 7 routes, 8 entry date, 9 epoch,
--       10.. index sets (target, tags)
-- ARGV: 1 ticket, 2 ttl, 3 index ttl, 4 value, 5 route, 6 target,
--       7 slot count, 8.. slots, then the entry's date (seconds), then
--       the ticket's epoch
local n = tonumber(ARGV[7])
-- A ticket of before Redis lost its data is worth nothing now.
if redis.call('GET', KEYS[9]) ~= ARGV[9 + n] then return 0 end
local ticket = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[3]) or '0')
if ticket < floor then return 0 end
for i = 1, n do
  local s = redis.call('HGET', KEYS[1], ARGV[7 + i])
  if s and tonumber(s) > ticket then return 0 end
end
local target = ARGV[6]
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  local sep = string.find(m, '\0', 1, true)
  local hash = string.find(m, '#[^#]*$')
  if sep and hash then
    local r = string.sub(m, 1, sep - 1)
    local p = string.sub(m, sep + 1, hash - 1)
    if (r == '*' or r == ARGV[5]) and string.sub(target, 1, #p) == p then return 0 end
  end
end
-- Racing fills of one variant: the newer representation wins.
local date = tonumber(ARGV[8 + n])
local stored = tonumber(redis.call('GET', KEYS[8]) or '-1')
if stored > date and redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[2])
redis.call('SET', KEYS[8], date, 'EX', ARGV[2])
redis.call('SADD', KEYS[5], KEYS[4])
redis.call('EXPIRE', KEYS[5], ARGV[3])
redis.call('SADD', KEYS[6], target .. '\0' .. KEYS[4])
redis.call('EXPIRE', KEYS[6], ARGV[3])
redis.call('SADD', KEYS[7], ARGV[5])
for i = 10, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[4])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 1
"#,
    )
});

pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 sequence, 2 slots, 3 prefixes, 4 prefix floor, 5 stream, 6 routes
-- ARGV: 1 node, 2 message, 3 stream length, 4 prefixes kept, 5 key prefix,
--       6 item count, then per item: kind ('u' target, 't' tag, 'p'
--       prefix), slot or member, index set or '-'
local seq = redis.call('INCR', KEYS[1])
local deleted = 0
local function drop(set)
  for _, e in ipairs(redis.call('SMEMBERS', set)) do
    deleted = deleted + redis.call('DEL', e)
  end
  redis.call('DEL', set)
end
local idx = 7
for i = 1, tonumber(ARGV[6]) do
  local kind, a, b = ARGV[idx], ARGV[idx + 1], ARGV[idx + 2]
  idx = idx + 3
  if kind == 'u' or kind == 't' then
    redis.call('HSET', KEYS[2], a, seq)
    drop(b)
  elseif kind == 'p' then
    redis.call('ZADD', KEYS[3], seq, a .. '#' .. seq)
    local sep = string.find(a, '\0', 1, true)
    local route = string.sub(a, 1, sep - 1)
    local prefix = string.sub(a, sep + 1)
    local routes = {route}
    if route == '*' then routes = redis.call('SMEMBERS', KEYS[6]) end
    for _, r in ipairs(routes) do
      local set = ARGV[5] .. ':r:' .. r
      for _, m in ipairs(redis.call('SMEMBERS', set)) do
        local s2 = string.find(m, '\0', 1, true)
        if s2 and string.sub(m, 1, #prefix) == prefix and s2 > #prefix then
          deleted = deleted + redis.call('DEL', string.sub(m, s2 + 1))
          redis.call('SREM', set, m)
        end
      end
    end
  end
end
local count = redis.call('ZCARD', KEYS[3])
local keep = tonumber(ARGV[4])
if count > keep then
  local old = redis.call('ZRANGE', KEYS[3], 0, count - keep - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, count - keep - 1)
  redis.call('SET', KEYS[4], old[#old])
end
local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*',
  'node', ARGV[1], 'seq', seq, 'invalidations', ARGV[2])
return {seq, deleted, id}
"#,
    )
});

pub static TICKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 sequence, 2 epoch; ARGV: 1 a new epoch, used if there is none
local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[2], e)
end
return {e, tonumber(redis.call('GET', KEYS[1]) or '0')}
"#,
    )
});

pub static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local members = redis.call('SMEMBERS', KEYS[1])
if #members == 0 then return {} end
return redis.call('MGET', unpack(members))
"#,
    )
});

pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 variants, 2 lock; ARGV: 1 node, 2 ttl (ms)
-- Returns {1 when this node now holds the lock, the variants' values}.
local held = 0
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then held = 1 end
local members = redis.call('SMEMBERS', KEYS[1])
if #members == 0 then return {held, {}} end
return {held, redis.call('MGET', unpack(members))}
"#,
    )
});

pub static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

pub static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 lease, 2 state; ARGV: 1 node, 2 ttl (ms), 3 state
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 1
"#,
    )
});

pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
"#,
    )
});
