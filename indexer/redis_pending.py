"""The pending set on Redis (indexer.pending has the interface and why it exists): Lua scripts,
so a claim, a completion or a renewal touches entries, leases and due times atomically.

Why a sorted set of due times: the claim used to scan the whole pending hash (HSCAN, with a lease
and a retry lookup per entry) for free entries, so its cost grew with every entry it had to
skip (leased elsewhere, postponed) and ``next_due`` read them all. Now every entry also sits in
``due`` scored by the time (ms) it may next be claimed: its event's time when new, the lease expiry
while a drain holds it (renewals move it), the retry time when postponed. A claim takes
``ZRANGEBYSCORE due -inf now LIMIT 0 n`` (O(log n + batch)), ``next_due`` reads the first score
(O(log n)); a redelivered drain finds its own live leases in ``held:<owner>`` (a small set with
a TTL). On a Redis Cluster every key here starts with the hash tag ``{<prefix>ingest:}``
(indexer/redis_client.py): the scripts touch them together, so the pending set is one slot.
Opened by ``RedisStore.pending_set`` on the store's own client.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from indexer.pending import DEFAULT_LEASE_S, PendingSet
from indexer.redis_client import RedisClient, is_cluster, key_group

# The lease format and the old-layout upgrade have one home: every script starts with these.
# A lease is "owner|expiry ms" in the lease hash.
_COMMON = """
local function lease_of(lease_key, pid)
  local l = redis.call('HGET', lease_key, pid)
  if not l then return nil, 0 end
  local sep = string.find(l, '|', 1, true)
  return string.sub(l, 1, sep - 1), tonumber(string.sub(l, sep + 1))
end
-- Entries written without a due score (by a worker from before the sorted set, which kept retry
-- times in a hash `retry_at`) get one from their lease and retry time; a no-op (two O(1) counts)
-- once every pending entry is scored, which this module's writers keep true.
local function upgrade(pending, due, lease, retry_at)
  if redis.call('ZCARD', due) >= redis.call('HLEN', pending) then return end
  local cursor = '0'
  repeat
    local res = redis.call('HSCAN', pending, cursor, 'COUNT', 1000)
    cursor = res[1]
    for i = 1, #res[2], 2 do
      local pid = res[2][i]
      local _, expiry = lease_of(lease, pid)
      local at = tonumber(redis.call('HGET', retry_at, pid) or '0')
      if expiry > at then at = expiry end
      redis.call('ZADD', due, 'NX', at, pid)
    end
  until cursor == '0'
  redis.call('DEL', retry_at)
end
"""

# KEYS: pending, due, lease, attempts, seq. ARGV: now_ms, pid, ... Records one event per product
# (a new token supersedes an older one); due at once unless a drain holds a live lease on it
# (that drain keeps it, then finds the token changed and leaves the entry for the next claim).
_ADD = (
    _COMMON
    + """
local pending, due, lease, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local last = redis.call('INCRBY', KEYS[5], #ARGV - 1)
for i = 2, #ARGV do
  local pid = ARGV[i]
  redis.call('HSET', pending, pid, tostring(last - #ARGV + i))
  redis.call('HDEL', attempts, pid)
  local _, expiry = lease_of(lease, pid)
  if expiry <= now then redis.call('ZADD', due, 'LT', now, pid) end  -- LT: a waiting entry keeps its place
end
return #ARGV - 1
"""
)

# KEYS: pending, due, lease, retry_at (old layout), held (this owner's live leases).
# ARGV: owner, now_ms, lease_ms, limit. Returns [pid, token, ...] of up to `limit` entries: this
# owner's own live leases first (a drain redelivered after a kill), then the entries due longest.
_CLAIM = (
    _COMMON
    + """
local pending, due, lease, held = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
local owner, now, lease_ms, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
upgrade(pending, due, lease, KEYS[4])
local expiry = now + lease_ms
local out = {}
local function take(pid, token)
  redis.call('HSET', lease, pid, owner .. '|' .. expiry)
  redis.call('ZADD', due, expiry, pid)
  redis.call('SADD', held, pid)
  out[#out + 1] = pid
  out[#out + 1] = token
end
for _, pid in ipairs(redis.call('SMEMBERS', held)) do
  local o, e = lease_of(lease, pid)
  local token = redis.call('HGET', pending, pid)
  if #out < 2 * limit and o == owner and e > now and token then take(pid, token)
  elseif o ~= owner or not token then redis.call('SREM', held, pid) end
end
if #out < 2 * limit then
  for _, pid in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit - #out / 2)) do
    local token = redis.call('HGET', pending, pid)
    if token then take(pid, token) else redis.call('ZREM', due, pid) end
  end
end
if #out > 0 then redis.call('PEXPIRE', held, 2 * lease_ms) end
return out
"""
)

# KEYS: pending, due, lease, attempts. ARGV: key base, now_ms, then pid, token, ... Removes the
# entries whose token is unchanged; the others (updated meanwhile) lose only their lease and are
# due at once. Returns how many were removed.
_COMPLETE = (
    _COMMON
    + """
local pending, due, lease, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, now = ARGV[1], tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 2 do
  local pid = ARGV[i]
  local owner = lease_of(lease, pid)
  if owner then redis.call('SREM', base .. 'held:' .. owner, pid) end
  redis.call('HDEL', lease, pid)
  if redis.call('HGET', pending, pid) == ARGV[i + 1] then
    redis.call('HDEL', pending, pid)
    redis.call('ZREM', due, pid)
    redis.call('HDEL', attempts, pid)
    n = n + 1
  else
    redis.call('ZADD', due, 'XX', now, pid)
  end
end
return n
"""
)

# KEYS: due, lease. ARGV: key base, at_ms, pid, ... Drops the leases (whoever holds them) and makes
# the entries due at `at` (now: released; later: postponed after a transient error).
_RESCHEDULE = (
    _COMMON
    + """
local due, lease = KEYS[1], KEYS[2]
local base, at = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local pid = ARGV[i]
  local owner = lease_of(lease, pid)
  if owner then redis.call('SREM', base .. 'held:' .. owner, pid) end
  redis.call('HDEL', lease, pid)
  redis.call('ZADD', due, 'XX', at, pid)
end
return #ARGV - 2
"""
)

# KEYS: due, lease, held. ARGV: owner, expiry_ms, lease_ms, pid, ... Extends the leases this owner
# still holds (and their due times). Returns how many.
_RENEW = (
    _COMMON
    + """
local due, lease, held = KEYS[1], KEYS[2], KEYS[3]
local owner, expiry = ARGV[1], ARGV[2]
local n = 0
for i = 4, #ARGV do
  if lease_of(lease, ARGV[i]) == owner then
    redis.call('HSET', lease, ARGV[i], owner .. '|' .. expiry)
    redis.call('ZADD', due, 'XX', expiry, ARGV[i])
    n = n + 1
  end
end
if n > 0 then redis.call('PEXPIRE', held, 2 * tonumber(ARGV[3])) end
return n
"""
)

# KEYS: pending, due, lease, retry_at (old layout). ARGV: now_ms. Returns -1 when nothing waits,
# 0 when some entry is claimable now, else the ms until the first lease or retry delay runs out.
_NEXT_DUE = (
    _COMMON
    + """
upgrade(KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then return -1 end
local at = tonumber(first[2]) - tonumber(ARGV[1])
if at < 0 then return 0 end
return at
"""
)


def _text(value: bytes | str) -> str:  # the clients answer bytes (no decode_responses)
    return value.decode() if isinstance(value, bytes) else value


class RedisPendingSet(PendingSet):
    def __init__(self, client: RedisClient, prefix: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.r = client
        self.base = base = key_group(prefix, "ingest:", is_cluster(client))  # one hash slot on a cluster
        self.pending = base + "pending"  # hash: product id -> token of its latest event
        self.due = base + "due"  # sorted set: product id -> when it may be claimed next (ms)
        self.lease = base + "lease"  # hash: product id -> "owner|expiry ms"
        self.retry_at = base + "retry_at"  # the old layout's retry times: read once by `upgrade`, then gone
        self.attempts = base + "attempts"  # hash: product id -> transient failures so far
        self.seq = base + "seq"
        self.scheduled = base + "drain_scheduled"  # set while a drain is queued and not started
        self.stats_key = base + "stats"  # hash: batches, images, vectors written
        self.lease_s = lease_s
        self.lease_ms = int(lease_s * 1000)
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._reschedule = client.register_script(_RESCHEDULE)
        self._renew = client.register_script(_RENEW)
        self._next_due = client.register_script(_NEXT_DUE)

    def held(self, owner: str) -> str:
        """The set of product ids `owner` holds leases on (so a redelivered drain finds them)."""
        return self.base + "held:" + owner

    def keys(self) -> list[str]:
        """Its fixed keys (the per-owner `held:` sets aside), for whoever cleans a prefix up."""
        return [
            self.pending,
            self.due,
            self.lease,
            self.retry_at,
            self.attempts,
            self.seq,
            self.scheduled,
            self.stats_key,
        ]

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    # -- producers (the encode_products task) ---------------------------------------------------
    def add(self, product_ids: Sequence[str]) -> None:
        """Record an event for each product (a new token supersedes an older one)."""
        ids = list(dict.fromkeys(product_ids))
        if ids:
            self._add(keys=[self.pending, self.due, self.lease, self.attempts, self.seq], args=[self._now_ms(), *ids])

    def claim_schedule(self, ttl_s: int) -> bool:
        """True for the one caller that should queue a drain (none is queued yet)."""
        return bool(self.r.set(self.scheduled, "1", nx=True, ex=ttl_s))

    # -- the drain --------------------------------------------------------------------------------
    def drain_started(self) -> None:
        """From now on a new event queues another drain (this one may already have looked)."""
        self.r.delete(self.scheduled)

    def claim(self, owner: str, limit: int) -> dict[str, str]:
        flat = self._claim(
            keys=[self.pending, self.due, self.lease, self.retry_at, self.held(owner)],
            args=[owner, self._now_ms(), self.lease_ms, limit],
        )
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def renew(self, owner: str, product_ids: Sequence[str]) -> int:
        """Extend this owner's leases by lease_s from now; returns how many it still held."""
        if not product_ids:
            return 0
        expiry = self._now_ms() + self.lease_ms
        return int(
            self._renew(
                keys=[self.due, self.lease, self.held(owner)], args=[owner, expiry, self.lease_ms, *product_ids]
            )
        )

    def next_due(self) -> float | None:
        """None: nothing waits; 0: something can be claimed now; else seconds until a lease
        (a drain's, maybe a dead one's) or a retry delay runs out."""
        ms = int(self._next_due(keys=[self.pending, self.due, self.lease, self.retry_at], args=[self._now_ms()]))
        return None if ms < 0 else ms / 1000.0

    def complete(self, items: dict[str, str]) -> int:
        if not items:
            return 0
        args = [x for pair in items.items() for x in pair]
        return int(
            self._complete(
                keys=[self.pending, self.due, self.lease, self.attempts], args=[self.base, self._now_ms(), *args]
            )
        )

    def count_failure(self, product_id: str) -> int:
        """One more transient failure of this product; returns how many so far."""
        return int(self.r.hincrby(self.attempts, product_id, 1))

    def postpone(self, product_id: str, delay_s: float) -> None:
        """Not due before now + delay; the lease is released for whichever drain comes then."""
        self._reschedule(keys=[self.due, self.lease], args=[self.base, int((time.time() + delay_s) * 1000), product_id])

    def release(self, product_ids: Sequence[str]) -> None:
        if product_ids:
            self._reschedule(keys=[self.due, self.lease], args=[self.base, self._now_ms(), *product_ids])

    def count_batch(self, images: int, vectors: int) -> None:
        pipe = self.r.pipeline()
        pipe.hincrby(self.stats_key, "batches", 1)
        pipe.hincrby(self.stats_key, "images", images)
        pipe.hincrby(self.stats_key, "vectors", vectors)
        pipe.execute()

    # -- reading ---------------------------------------------------------------------------------
    def waiting(self, product_ids: Sequence[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(product_ids))
        tokens = self.r.hmget(self.pending, ids) if ids else []
        return {pid: _text(t) for pid, t in zip(ids, tokens) if t is not None}

    def stats(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.r.hgetall(self.stats_key).items()}

    def __len__(self) -> int:
        return int(self.r.hlen(self.pending))
