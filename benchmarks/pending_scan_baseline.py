"""The pending set as it was before the sorted set of due times (worker/pending.py at commit
347dff2): the claim and next_due scan the whole hash (HSCAN, a lease and a retry lookup per
entry). Kept only as the baseline of benchmarks/bulk_load.py, which runs the same load through
both; nothing else imports it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

# KEYS: pending, lease, retry_at. ARGV: owner, now_ms, lease_ms, limit, scan_count.
# Returns [pid, token, ...] of up to `limit` due entries not leased by someone else; leases them.
_CLAIM = """
local owner, now, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local out, cursor = {}, '0'
repeat
  local res = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', ARGV[5])
  cursor = res[1]
  local kv = res[2]
  for i = 1, #kv, 2 do
    local pid = kv[i]
    local free = true
    local lease = redis.call('HGET', KEYS[2], pid)
    if lease then
      local sep = string.find(lease, '|', 1, true)
      if string.sub(lease, 1, sep - 1) ~= owner and tonumber(string.sub(lease, sep + 1)) > now then
        free = false
      end
    end
    local due = redis.call('HGET', KEYS[3], pid)
    if free and due and tonumber(due) > now then free = false end
    if free then
      redis.call('HSET', KEYS[2], pid, owner .. '|' .. (now + lease_ms))
      out[#out + 1] = pid
      out[#out + 1] = kv[i + 1]
      if #out >= 2 * limit then return out end
    end
  end
until cursor == '0'
return out
"""

# KEYS: pending, lease, retry_at, attempts. ARGV: pid, token, ... Removes entries whose token is
# unchanged; for the others (updated meanwhile) only the lease goes. Returns how many removed.
_COMPLETE = """
local n = 0
for i = 1, #ARGV, 2 do
  local pid = ARGV[i]
  if redis.call('HGET', KEYS[1], pid) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], pid)
    redis.call('HDEL', KEYS[3], pid)
    redis.call('HDEL', KEYS[4], pid)
    n = n + 1
  end
  redis.call('HDEL', KEYS[2], pid)
end
return n
"""


# KEYS: lease. ARGV: owner, expiry_ms, pid, ... Extends the leases this owner still holds.
_RENEW = """
local n = 0
local prefix = ARGV[1] .. '|'
for i = 3, #ARGV do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease and string.sub(lease, 1, #prefix) == prefix then
    redis.call('HSET', KEYS[1], ARGV[i], prefix .. ARGV[2])
    n = n + 1
  end
end
return n
"""

# KEYS: pending, lease, retry_at. ARGV: now_ms, scan_count. Returns -1 when nothing waits, 0 when
# some entry is claimable now, else the ms until the first lease or retry delay runs out.
_NEXT_DUE = """
local now = tonumber(ARGV[1])
local soonest = -1
local cursor = '0'
repeat
  local res = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', ARGV[2])
  cursor = res[1]
  local kv = res[2]
  for i = 1, #kv, 2 do
    local pid = kv[i]
    local at = 0
    local lease = redis.call('HGET', KEYS[2], pid)
    if lease then
      local sep = string.find(lease, '|', 1, true)
      local expiry = tonumber(string.sub(lease, sep + 1))
      if expiry > now then at = expiry - now end
    end
    local due = redis.call('HGET', KEYS[3], pid)
    if due and tonumber(due) > now and tonumber(due) - now > at then at = tonumber(due) - now end
    if at == 0 then return 0 end
    if soonest < 0 or at < soonest then soonest = at end
  end
until cursor == '0'
return soonest
"""

DEFAULT_LEASE_S = 15.0


class PendingSet:
    def __init__(self, client: redis.Redis, prefix: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.r = client
        base = prefix + "ingest:"
        self.pending = base + "pending"  # hash: product id -> token of its latest event
        self.lease = base + "lease"  # hash: product id -> "owner|expiry ms"
        self.retry_at = base + "retry_at"  # hash: product id -> not before (ms), after a transient error
        self.attempts = base + "attempts"  # hash: product id -> transient failures so far
        self.seq = base + "seq"
        self.scheduled = base + "drain_scheduled"  # set while a drain is queued and not started
        self.stats_key = base + "stats"  # hash: batches, images, vectors written
        self.lease_s = lease_s
        self.lease_ms = int(lease_s * 1000)
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._renew = client.register_script(_RENEW)
        self._next_due = client.register_script(_NEXT_DUE)

    def keys(self) -> list[str]:
        return [self.pending, self.lease, self.retry_at, self.attempts, self.seq, self.scheduled, self.stats_key]

    # -- producers (the encode_products task) ---------------------------------------------------
    def add(self, product_ids: Sequence[str]) -> None:
        """Record an event for each product (a new token supersedes an older one)."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return
        last = self.r.incrby(self.seq, len(ids))
        first = last - len(ids) + 1
        pipe = self.r.pipeline()
        pipe.hset(self.pending, mapping={pid: str(first + i) for i, pid in enumerate(ids)})
        pipe.hdel(self.retry_at, *ids)  # a new event is due at once
        pipe.hdel(self.attempts, *ids)
        pipe.execute()

    def claim_schedule(self, ttl_s: int) -> bool:
        """True for the one caller that should queue a drain (none is queued yet)."""
        return bool(self.r.set(self.scheduled, "1", nx=True, ex=ttl_s))

    # -- the drain --------------------------------------------------------------------------------
    def drain_started(self) -> None:
        """From now on a new event queues another drain (this one may already have looked)."""
        self.r.delete(self.scheduled)

    def claim(self, owner: str, limit: int, scan_count: int = 500) -> dict[str, str]:
        now = int(time.time() * 1000)
        flat = self._claim(
            keys=[self.pending, self.lease, self.retry_at], args=[owner, now, self.lease_ms, limit, scan_count]
        )
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def renew(self, owner: str, product_ids: Sequence[str]) -> int:
        """Extend this owner's leases by lease_s from now; returns how many it still held."""
        if not product_ids:
            return 0
        expiry = int(time.time() * 1000) + self.lease_ms
        return int(self._renew(keys=[self.lease], args=[owner, expiry, *product_ids]))

    def next_due(self, scan_count: int = 500) -> float | None:
        """None: nothing waits; 0: something can be claimed now; else seconds until a lease
        (a drain's, maybe a dead one's) or a retry delay runs out. Stops at the first
        claimable entry, so a backlog answers at once."""
        ms = int(
            self._next_due(keys=[self.pending, self.lease, self.retry_at], args=[int(time.time() * 1000), scan_count])
        )
        return None if ms < 0 else ms / 1000.0

    def complete(self, items: dict[str, str]) -> int:
        if not items:
            return 0
        args = [x for pair in items.items() for x in pair]
        return int(self._complete(keys=[self.pending, self.lease, self.retry_at, self.attempts], args=args))

    def count_failure(self, product_id: str) -> int:
        """One more transient failure of this product; returns how many so far."""
        return int(self.r.hincrby(self.attempts, product_id, 1))

    def postpone(self, product_id: str, delay_s: float) -> None:
        """Not due before now + delay; the lease is released for whichever drain comes then."""
        pipe = self.r.pipeline()
        pipe.hset(self.retry_at, product_id, int((time.time() + delay_s) * 1000))
        pipe.hdel(self.lease, product_id)
        pipe.execute()

    def release(self, product_ids: Sequence[str]) -> None:
        if product_ids:
            self.r.hdel(self.lease, *product_ids)

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
        return {pid: t.decode() for pid, t in zip(ids, tokens) if t is not None}

    def stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(self.stats_key).items()}

    def __len__(self) -> int:
        return int(self.r.hlen(self.pending))
