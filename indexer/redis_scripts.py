"""Lua scripts of the Redis backend: each compound update runs atomically inside Redis.

A script either completes or (on an error before its first write) changes nothing, so readers
never see half an update. Keys are built inside the scripts from ARGV[1] (p below): the prefix on
one Redis, the prefix as a hash tag (`{clik:}`) on a Redis Cluster, so every key a script builds
lies in the slot of KEYS[1] (`p..'reg'`, passed so that a cluster client routes the call there).
The packed blocks (`b:`) are the exception: on a cluster they live outside that slot, so
BUILD_BLOCK stores a block only when told to (one Redis) and DELETE_EXHIBITION leaves their
deletion to the caller (indexer/redis_store.py, docs/indexer.md).

Key layout (p = prefix, or {prefix} on a cluster):
  p..'reg'            hash  version name -> JSON {id, dim, nb, slab, bundle, state, created_at}
  p..'reg:active'     str   name of the active version
  p..'reg:next'       int   last version id handed out (ids are never reused)
  p..'p:'..pid        hash  s=image source, st=status, h=image hash, d=16-byte digest, e=error
  p..'pe:'..pid       set   exhibitions listing the product
  p..'hp:'..hash      set   products whose image has this content hash
  p..'e:'..eid        hash  t=topic JSON, ids='\n'-joined product ids, u=updated_at, g=generation,
                            c=creation number (from p..'eseq': a re-created exhibition's stamps are new)
  p..'vg:'..vid       hash  eid -> generation of that exhibition's vectors in version vid
  p..'vi:'..vid..':'..bucket  hash  digest -> slot   (small, listpack-encoded buckets)
  p..'vs:'..vid..':'..slab    str   slab of fp16 vectors, slot at (slot % slab) * dim * 2
  p..'vn:'..vid       int   slots used in version vid
  prefix..'b:'..vid..':'..eid hash s=stamp, d=packed block (a cache with a TTL; untagged on a cluster)
  p..'t:'..vid        hash  normalised topic key -> float32 embedding
  p..'cnt'            hash  v='1' when the coverage counters below are kept (a store created with
                            them), products, encoded, failed: product counts
  p..'vc'             hash  vid -> encoded products having a vector in version vid
  p..'cgen'           int   catalogue generation: moves with every product or vector change
  p..'cchg'           zset  product id -> the catalogue generation of its last change (the change
                            log incremental catalogue indexes read); the oldest entries beyond
                            p..'cchg:cap' (default 100,000) are trimmed and p..'cchg:floor'
                            remembers the newest generation trimmed: a reader behind it rebuilds
"""

from __future__ import annotations

_COMMON = r"""
local function version(p, name)
  local j = redis.call('HGET', p .. 'reg', name)
  if not j then return nil end
  return cjson.decode(j)
end
local function must_version(p, name)
  local v = version(p, name)
  if not v then error({err = 'CLIK_NOVERSION unknown model version ' .. name}) end
  return v
end
local function must_product(p, pid)
  if redis.call('EXISTS', p .. 'p:' .. pid) == 0 then
    error({err = 'CLIK_NOPRODUCT unknown product ' .. pid})
  end
end
-- the blocks of the product's exhibitions are stale (in every version)
local function bump_exhibitions(p, pid)
  for _, e in ipairs(redis.call('SMEMBERS', p .. 'pe:' .. pid)) do
    local ek = p .. 'e:' .. e
    if redis.call('EXISTS', ek) == 1 then redis.call('HINCRBY', ek, 'g', 1) end
  end
end
-- The catalogue moved to a new generation; these products changed in it (what an incremental
-- catalogue index re-reads). The log keeps one entry per product, the newest cap of them.
local function log_catalogue_change(p, pids)
  local g = redis.call('INCR', p .. 'cgen')
  local log = p .. 'cchg'
  for i = 1, #pids, 1000 do  -- unpack() stops near 8,000 values (Lua's C stack)
    local args = {}
    for j = i, math.min(i + 999, #pids) do args[#args + 1] = g; args[#args + 1] = pids[j] end
    redis.call('ZADD', log, unpack(args))
  end
  local cap = tonumber(redis.call('GET', p .. 'cchg:cap') or '100000')
  local over = redis.call('ZCARD', log) - cap
  if over > 0 then
    local newest = redis.call('ZRANGE', log, over - 1, over - 1, 'WITHSCORES')
    redis.call('SET', p .. 'cchg:floor', newest[2])
    redis.call('ZREMRANGEBYRANK', log, 0, over - 1)
  end
end
-- membership-level change (product status/hash): every version's block is stale
local function bump_product(p, pid)
  log_catalogue_change(p, {pid})  -- the catalogue (products with vectors) may have changed
  for _, e in ipairs(redis.call('SMEMBERS', p .. 'pe:' .. pid)) do
    local ek = p .. 'e:' .. e
    if redis.call('EXISTS', ek) == 1 then redis.call('HINCRBY', ek, 'g', 1) end
  end
end
local function bucket_key(p, v, dg)
  return p .. 'vi:' .. v.id .. ':' .. ((string.byte(dg, 1) * 256 + string.byte(dg, 2)) % v.nb)
end
local function slot_of(p, v, dg)
  local s = redis.call('HGET', bucket_key(p, v, dg), dg)
  if s then return tonumber(s) end
  return nil
end
-- Coverage counters (p..'cnt', p..'vc') are kept only by stores that had them from the start:
-- a store written before they existed (it has a catalogue generation already) is marked '0' and
-- counted by scanning instead (RedisStore.coverage).
local function counted(p)
  local c = redis.call('HGET', p .. 'cnt', 'v')
  if c then return c == '1' end
  c = (redis.call('EXISTS', p .. 'cgen') == 0) and '1' or '0'
  redis.call('HSET', p .. 'cnt', 'v', c)
  return c == '1'
end
-- add (sign 1) or remove (sign -1) a product's part of the counters, as its record says now
local function count_product(p, pk, sign)
  local r = redis.call('HMGET', pk, 'st', 'd')
  if r[1] == 'failed' then redis.call('HINCRBY', p .. 'cnt', 'failed', sign) end
  if r[1] == 'encoded' and r[2] then
    redis.call('HINCRBY', p .. 'cnt', 'encoded', sign)
    for _, j in ipairs(redis.call('HVALS', p .. 'reg')) do
      local v = cjson.decode(j)
      if redis.call('HEXISTS', bucket_key(p, v, r[2]), r[2]) == 1 then
        redis.call('HINCRBY', p .. 'vc', v.id, sign)
      end
    end
  end
end
local function read_vec(p, v, slot)
  local vsz = v.dim * 2
  local off = (slot % v.slab) * vsz
  return redis.call('GETRANGE', p .. 'vs:' .. v.id .. ':' .. math.floor(slot / v.slab), off, off + vsz - 1)
end
"""

REGISTER_VERSION = (
    _COMMON
    + r"""
local p, name, dim = ARGV[1], ARGV[2], tonumber(ARGV[3])
local v = version(p, name)
if v then
  if tonumber(v.dim) ~= dim then
    return redis.error_reply('CLIK_CONFLICT version ' .. name .. ' is registered with dim ' .. v.dim)
  end
  return redis.call('HGET', p .. 'reg', name)
end
local id = redis.call('INCR', p .. 'reg:next')
local j = cjson.encode({id = tostring(id), dim = dim, nb = tonumber(ARGV[4]), slab = tonumber(ARGV[5]),
  bundle = ARGV[6], state = 'filling', created_at = ARGV[7]})
redis.call('HSET', p .. 'reg', name, j)
return j
"""
)

SET_STATE = (
    _COMMON
    + r"""
local p, name, state = ARGV[1], ARGV[2], ARGV[3]
local v = must_version(p, name)
v.state = state
redis.call('HSET', p .. 'reg', name, cjson.encode(v))
if ARGV[4] == '1' then redis.call('SET', p .. 'reg:active', name) end
return 1
"""
)

DROP_VERSION = (
    _COMMON
    + r"""
local p, name = ARGV[1], ARGV[2]
local v = must_version(p, name)
if redis.call('GET', p .. 'reg:active') == name then
  return redis.error_reply('CLIK_INUSE version ' .. name .. ' is active; activate another one first')
end
-- unregistering first makes the data unreachable at once; the caller then deletes it
local j = redis.call('HGET', p .. 'reg', name)
redis.call('HDEL', p .. 'reg', name)
redis.call('HDEL', p .. 'vc', v.id)
return {j, redis.call('GET', p .. 'vn:' .. v.id) or '0'}
"""
)

# ARGV[4]: the product's attributes as JSON, or '' to keep the stored ones. Business rules
# (availability, families, boosts) read them, so a change bumps the product's exhibitions.
PUT_PRODUCT = (
    _COMMON
    + r"""
local p, pid, src, attrs = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pk = p .. 'p:' .. pid
local stored = redis.call('HGET', pk, 'a')
if attrs == '' then attrs = stored end
if redis.call('HGET', pk, 's') == src then
  if attrs and attrs ~= stored then
    redis.call('HSET', pk, 'a', attrs)
    bump_exhibitions(p, pid)  -- the blocks carry no attrs, but their business rules read them
  end
  return 0
end
if counted(p) then
  if redis.call('EXISTS', pk) == 1 then count_product(p, pk, -1)
  else redis.call('HINCRBY', p .. 'cnt', 'products', 1) end
end
local old = redis.call('HGET', pk, 'h')
if old then redis.call('SREM', p .. 'hp:' .. old, pid) end
redis.call('DEL', pk)
redis.call('HSET', pk, 's', src, 'st', 'pending')
if attrs then redis.call('HSET', pk, 'a', attrs) end
bump_product(p, pid)
return 1
"""
)

MARK_ENCODED = (
    _COMMON
    + r"""
local p, pid, h, dg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
must_product(p, pid)
local pk = p .. 'p:' .. pid
local c = counted(p)
if c then count_product(p, pk, -1) end
local old = redis.call('HGET', pk, 'h')
if old and old ~= h then redis.call('SREM', p .. 'hp:' .. old, pid) end
redis.call('HSET', pk, 'st', 'encoded', 'h', h, 'd', dg)
redis.call('HDEL', pk, 'e')
redis.call('SADD', p .. 'hp:' .. h, pid)
if c then count_product(p, pk, 1) end
bump_product(p, pid)
return 1
"""
)

MARK_FAILED = (
    _COMMON
    + r"""
local p, pid, reason = ARGV[1], ARGV[2], ARGV[3]
must_product(p, pid)
local c = counted(p)
if c then count_product(p, p .. 'p:' .. pid, -1) end
redis.call('HSET', p .. 'p:' .. pid, 'st', 'failed', 'e', reason)
if c then count_product(p, p .. 'p:' .. pid, 1) end
bump_product(p, pid)
return 1
"""
)

DELETE_PRODUCT = (
    _COMMON
    + r"""
local p, pid = ARGV[1], ARGV[2]
must_product(p, pid)
if counted(p) then
  count_product(p, p .. 'p:' .. pid, -1)
  redis.call('HINCRBY', p .. 'cnt', 'products', -1)
end
local h = redis.call('HGET', p .. 'p:' .. pid, 'h')
if h then redis.call('SREM', p .. 'hp:' .. h, pid) end
redis.call('DEL', p .. 'p:' .. pid)
bump_product(p, pid)
return 1
"""
)

PUT_EXHIBITION = (
    _COMMON
    + r"""
local p, eid, topic, ids, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ek = p .. 'e:' .. eid
local old = redis.call('HGET', ek, 'ids')
if old then
  for pid in string.gmatch(old, '[^\n]+') do redis.call('SREM', p .. 'pe:' .. pid, eid) end
else
  -- a new (or re-created) exhibition: its stamps differ from any block of a former one
  redis.call('HSET', ek, 'c', redis.call('INCR', p .. 'eseq'))
end
for pid in string.gmatch(ids, '[^\n]+') do redis.call('SADD', p .. 'pe:' .. pid, eid) end
redis.call('HSET', ek, 't', topic, 'ids', ids, 'u', now)
redis.call('HINCRBY', ek, 'g', 1)
redis.call('ZADD', p .. 'ex', 0, eid)
return 1
"""
)

DELETE_EXHIBITION = (
    _COMMON
    + r"""
local p, eid = ARGV[1], ARGV[2]
local ek = p .. 'e:' .. eid
local ids = redis.call('HGET', ek, 'ids')
if not ids then return redis.error_reply('CLIK_NOEXHIBITION unknown exhibition ' .. eid) end
for pid in string.gmatch(ids, '[^\n]+') do redis.call('SREM', p .. 'pe:' .. pid, eid) end
redis.call('DEL', ek)
redis.call('ZREM', p .. 'ex', eid)
local vids = {}
for _, j in ipairs(redis.call('HVALS', p .. 'reg')) do
  local v = cjson.decode(j)
  redis.call('HDEL', p .. 'vg:' .. v.id, eid)
  vids[#vids + 1] = v.id
end
return vids  -- the caller deletes the blocks b:<vid>:<eid> (outside this slot on a cluster)
"""
)

# ARGV: p, name, vid, then (hash, digest, fp16 bytes) triples.
PUT_VECTORS = (
    _COMMON
    + r"""
local p, name, vid = ARGV[1], ARGV[2], ARGV[3]
local v = must_version(p, name)
if v.id ~= vid then return redis.error_reply('CLIK_STALE version ' .. name .. ' was re-registered') end
local vsz = v.dim * 2
for i = 4, #ARGV, 3 do
  local h, dg, vec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if #vec ~= vsz then return redis.error_reply('CLIK_BADVECTOR wrong byte length') end
end
local c = counted(p)
local changed = {}  -- products showing these images: the change log's entries
for i = 4, #ARGV, 3 do
  local h, dg, vec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local bk = bucket_key(p, v, dg)
  local slot = redis.call('HGET', bk, dg)
  if slot then
    slot = tonumber(slot)
  else
    slot = redis.call('INCR', p .. 'vn:' .. v.id) - 1
    redis.call('HSET', bk, dg, slot)
    if c then  -- a new image for this version: its encoded products are now covered
      local n = 0
      for _, pid in ipairs(redis.call('SMEMBERS', p .. 'hp:' .. h)) do
        local r = redis.call('HMGET', p .. 'p:' .. pid, 'st', 'd')
        if r[1] == 'encoded' and r[2] == dg then n = n + 1 end
      end
      if n > 0 then redis.call('HINCRBY', p .. 'vc', v.id, n) end
    end
  end
  local sk = p .. 'vs:' .. v.id .. ':' .. math.floor(slot / v.slab)
  -- allocate the whole slab at once: growing a string step by step over-allocates (sds greedy
  -- growth), an exact-size string costs exactly slab * dim * 2 bytes
  if redis.call('EXISTS', sk) == 0 then redis.call('SETRANGE', sk, v.slab * vsz - 1, '\0') end
  redis.call('SETRANGE', sk, (slot % v.slab) * vsz, vec)
  -- only this version's blocks of exhibitions showing this image are stale
  for _, pid in ipairs(redis.call('SMEMBERS', p .. 'hp:' .. h)) do
    changed[#changed + 1] = pid
    for _, e in ipairs(redis.call('SMEMBERS', p .. 'pe:' .. pid)) do
      redis.call('HINCRBY', p .. 'vg:' .. v.id, e, 1)
    end
  end
end
log_catalogue_change(p, changed)
return 1
"""
)

# ARGV: p, name, digests... -> one fp16 string (or false) per digest
GET_VECTORS = (
    _COMMON
    + r"""
local p, name = ARGV[1], ARGV[2]
local v = must_version(p, name)
local out = {}
for i = 3, #ARGV do
  local slot = slot_of(p, v, ARGV[i])
  if slot then out[#out + 1] = read_vec(p, v, slot) else out[#out + 1] = false end
end
return out
"""
)

# ARGV: p, since -> {generation, floor, product ids changed after generation `since`...}: read
# together, so the ids are exactly the changes up to the generation returned.
CATALOGUE_CHANGES = r"""
local p, since = ARGV[1], ARGV[2]
local out = {redis.call('GET', p .. 'cgen') or '0', redis.call('GET', p .. 'cchg:floor') or '0'}
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', p .. 'cchg', '(' .. since, '+inf')) do out[#out + 1] = pid end
return out
"""

# ARGV: p, name, digests... -> 1 or 0 per digest (no vector bytes cross the wire)
HAS_VECTORS = (
    _COMMON
    + r"""
local p, name = ARGV[1], ARGV[2]
local v = version(p, name)
local out = {}
for i = 3, #ARGV do
  if v and slot_of(p, v, ARGV[i]) then out[#out + 1] = 1 else out[#out + 1] = 0 end
end
return out
"""
)

PUT_TOPIC = (
    _COMMON
    + r"""
local p, name, key, vec = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local v = must_version(p, name)
redis.call('HSET', p .. 't:' .. v.id, key, vec)
return 1
"""
)

GET_TOPIC = (
    _COMMON
    + r"""
local p, name, key = ARGV[1], ARGV[2], ARGV[3]
local v = must_version(p, name)
return redis.call('HGET', p .. 't:' .. v.id, key)
"""
)

_RESOLVE = r"""
-- the version to rank with, and the stamp of the exhibition's block in that version
local function resolve(p, eid, name)
  if name == '' then
    name = redis.call('GET', p .. 'reg:active')
    if not name then error({err = 'CLIK_NOACTIVE no model version has been activated'}) end
  end
  local v = must_version(p, name)
  local e = redis.call('HMGET', p .. 'e:' .. eid, 'g', 'c')
  if not e[1] then error({err = 'CLIK_NOEXHIBITION unknown exhibition ' .. eid}) end
  return name, v, v.id .. ':' .. e[1] .. ':' .. (redis.call('HGET', p .. 'vg:' .. v.id, eid) or '0') ..
    ':' .. (e[2] or '0')
end
"""

# ARGV: p, eid, requested version ('' = active) -> {version, version id, stamp}.
# The big block is then read with a plain HMGET: passing megabytes through Lua costs ~5 ms.
CHECK_BLOCK = (
    _COMMON
    + _RESOLVE
    + r"""
local name, v, stamp = resolve(ARGV[1], ARGV[2], ARGV[3])
return {name, v.id, stamp}
"""
)

# ARGV: p, eid, version name, ttl, store ('1': store the block with its stamp here; '0': on a
# cluster, where the block key is in another slot and the caller stores it) -> {version, stamp,
# block}: one pass over the members, vectors of this version only.
BUILD_BLOCK = (
    _COMMON
    + _RESOLVE
    + r"""
local p, eid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
local name, v, stamp = resolve(p, eid, ARGV[3])
local scored, vecs, pending, failed, unknown = {}, {}, {}, {}, {}
for pid in string.gmatch(redis.call('HGET', p .. 'e:' .. eid, 'ids') or '', '[^\n]+') do
  local pr = redis.call('HMGET', p .. 'p:' .. pid, 'st', 'd')
  if not pr[1] then
    unknown[#unknown + 1] = pid
  elseif pr[1] == 'failed' then
    failed[#failed + 1] = pid
  elseif pr[1] ~= 'encoded' or not pr[2] then
    pending[#pending + 1] = pid
  else
    local slot = slot_of(p, v, pr[2])
    if slot then
      scored[#scored + 1] = pid
      vecs[#vecs + 1] = read_vec(p, v, slot)
    else
      pending[#pending + 1] = pid
    end
  end
end
local parts = {'CKB1', struct.pack('<I4I4', v.dim, #scored)}
for _, list in ipairs({scored, pending, failed, unknown}) do
  local blob = table.concat(list, '\n')
  parts[#parts + 1] = struct.pack('<I4', #blob)
  parts[#parts + 1] = blob
end
parts[#parts + 1] = table.concat(vecs)
local data = table.concat(parts)
if ARGV[5] == '1' then
  local bk = p .. 'b:' .. v.id .. ':' .. eid
  redis.call('HSET', bk, 's', stamp, 'd', data)
  redis.call('EXPIRE', bk, ttl)
end
return {name, stamp, data}
"""
)


# The active version and its record in one round trip (the API asks on every request).
ACTIVE_VERSION = r"""
local p = ARGV[1]
local a = redis.call('GET', p .. 'reg:active')
if not a then return false end
return {a, redis.call('HGET', p .. 'reg', a)}
"""

# KEYS[1] the lock record of update_jobs on a cluster, ARGV[1] the holder's token: deleted only
# by its holder (after an expiry another writer may hold it, and must keep it)
RELEASE_LOCK = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
