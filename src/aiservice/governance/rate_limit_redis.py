"""The Redis rate-limit store: one Lua script per admission, so every process sees one count.

A script runs alone on the Redis server, so checking all limits of all subjects and charging
them is one atomic step (nothing is charged when one limit refuses) and one round trip
(EVALSHA). It does what MemoryRateLimitStore (rate_limit_store.py) does, step for step.

Keys, per subject S under the prefix P: `P h:S` a hash (bucket amounts `m r <index>`,
`m t <index>`, `d r …`, `d t …` without the spaces; window totals `mr mt dr dt`; burst level
`bl` and time `bt`; stats `sx` rejected, `sq` queued, `sw` wait ms), `P m:S` and `P d:S` the
sorted sets of the minute's and day's non-empty bucket indexes; the three expire together
SUBJECT_TTL_S after the subject's last new bucket or refusal. `P subjects` scores every subject
by when it was last seen. One Redis node (a script's keys of several subjects cannot be spread
over a cluster), and no eviction of these keys (a maxmemory policy that drops a bucket set but
keeps its hash would leave totals that are never pruned). Times come from the caller's clock.
"""

from __future__ import annotations

from redis.asyncio import Redis

from aiservice.governance.rate_limit_store import (
    SUBJECT_TTL_S,
    WINDOWS,
    Attempt,
    Outcome,
    SubjectCounts,
    WindowUsage,
    bucket_index,
)

# Shared by the scripts: the windows and dropping a window's expired buckets.
_PRELUDE = """
local NEVER = -1
local WINDOWS = {{name = 'm', length = 60, bucket = 1}, {name = 'd', length = 86400, bucket = 60}}

local function prune(h, z, w, now)
  local cutoff = math.floor(now / w.bucket) - w.length / w.bucket
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. cutoff)
  if #expired > 0 then
    local fields = {}
    for _, index in ipairs(expired) do
      fields[#fields + 1] = w.name .. 'r' .. index
      fields[#fields + 1] = w.name .. 't' .. index
    end
    local amounts = redis.call('HMGET', h, unpack(fields))
    local requests, tokens = 0, 0
    for j = 1, #amounts, 2 do
      requests = requests + (tonumber(amounts[j]) or 0)
      tokens = tokens + (tonumber(amounts[j + 1]) or 0)
    end
    -- 0 - x, not -x: Lua writes -0 as "-0", which HINCRBY refuses.
    redis.call('HINCRBY', h, w.name .. 'r', 0 - requests)
    redis.call('HINCRBY', h, w.name .. 't', 0 - tokens)
    redis.call('HDEL', h, unpack(fields))
    redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. cutoff)
  end
end
"""

# KEYS: the subjects set, then per subject its hash, minute set, day set.
# ARGV[1]: "now tokens take count_rejection waited_ms ttl_s" (waited_ms -1: did not wait);
# then per subject its name and "rpm rpd tpm tpd burst" (-1: unlimited). Few arguments and
# one string back: redis-py's pure-Python protocol costs more per element than the script.
_ATTEMPT = (
    _PRELUDE
    + """
local head = {}
for word in string.gmatch(ARGV[1], '%S+') do head[#head + 1] = tonumber(word) end
local now, tokens, take, count_rejection, waited, ttl = unpack(head)
take, count_rejection = take == 1, count_rejection == 1
local n = (#KEYS - 1) / 3

-- When `need` more requests (kind 'r') or tokens ('t') fit: walk buckets oldest first.
local function free_at(h, z, w, kind, used, limit, need)
  if need > limit then return NEVER end
  local indexes = redis.call('ZRANGE', z, 0, -1)
  local fields = {}
  for j, index in ipairs(indexes) do fields[j] = w.name .. kind .. index end
  if #fields == 0 then return 0 end
  local amounts = redis.call('HMGET', h, unpack(fields))
  for j, index in ipairs(indexes) do
    used = used - (tonumber(amounts[j]) or 0)
    if used + need <= limit then return (tonumber(index) + w.length / w.bucket + 1) * w.bucket end
  end
  return 0
end

local refused, refused_limit, retry_at = 0, '-', 0
local function consider(i, limit_name, at)
  if refused == 0 or (retry_at ~= NEVER and (at == NEVER or at > retry_at)) then
    refused, refused_limit, retry_at = i, limit_name, at
  end
end

local LIMITS = {{'rpm', 1, 'r'}, {'rpd', 2, 'r'}, {'tpm', 1, 't'}, {'tpd', 2, 't'}}
local subjects = {}
for i = 1, n do
  local s = {h = KEYS[3 * i - 1], z = {KEYS[3 * i], KEYS[3 * i + 1]}, name = ARGV[2 * i]}
  local limits = {}
  for word in string.gmatch(ARGV[2 * i + 1], '%S+') do limits[#limits + 1] = tonumber(word) end
  prune(s.h, s.z[1], WINDOWS[1], now)
  prune(s.h, s.z[2], WINDOWS[2], now)
  s.index = {math.floor(now / WINDOWS[1].bucket), math.floor(now / WINDOWS[2].bucket)}
  local m, d = string.format('%d', s.index[1]), string.format('%d', s.index[2])
  s.fields = {'mr', 'mt', 'dr', 'dt', 'mr' .. m, 'mt' .. m, 'dr' .. d, 'dt' .. d}
  local values = redis.call('HMGET', s.h, 'bl', 'bt', unpack(s.fields))
  s.amounts = {}
  for j = 1, 8 do s.amounts[j] = tonumber(values[j + 2]) or 0 end
  local totals = {r = {s.amounts[1], s.amounts[3]}, t = {s.amounts[2], s.amounts[4]}}
  for k, spec in ipairs(LIMITS) do
    local used = totals[spec[3]][spec[2]]
    local need = spec[3] == 'r' and 1 or tokens
    if limits[k] >= 0 and used + need > limits[k] then
      consider(i, spec[1], free_at(s.h, s.z[spec[2]], WINDOWS[spec[2]], spec[3], used,
                                   limits[k], need))
    end
  end
  s.burst = limits[5]
  if s.burst >= 0 then
    s.rate = (limits[1] >= 0 and limits[1] or s.burst) / 60
    if values[1] then
      local refill = math.max(0, now - tonumber(values[2])) * s.rate
      s.level = math.min(s.burst, tonumber(values[1]) + refill)
    else
      s.level = s.burst
    end
    if s.level + 1e-9 < 1 then
      consider(i, 'burst', s.rate > 0 and now + (1 - s.level) / s.rate or NEVER)
    end
  end
  subjects[i] = s
end

local admitted = refused == 0
local charge = admitted and take
local reject = not charge and (count_rejection or (not admitted and retry_at == NEVER))
-- All of a subject's keys expire together (its totals must never outlive the bucket sets that
-- let them be pruned), ttl after they were last refreshed.
local function keep(s)
  redis.call('EXPIRE', s.h, ttl)
  redis.call('EXPIRE', s.z[1], ttl)
  redis.call('EXPIRE', s.z[2], ttl)
  redis.call('ZADD', KEYS[1], now, s.name)
end
local function count_wait(s)
  if waited >= 0 then
    redis.call('HINCRBY', s.h, 'sq', 1)
    redis.call('HINCRBYFLOAT', s.h, 'sw', waited)
  end
end
if charge then
  for _, s in ipairs(subjects) do
    -- Totals and this second's and minute's buckets: +1 request (odd places), +tokens (even).
    local update = {}
    for j = 1, 8 do
      s.amounts[j] = s.amounts[j] + (j % 2 == 1 and 1 or tokens)
      update[#update + 1] = s.fields[j]
      update[#update + 1] = string.format('%d', s.amounts[j])
    end
    if s.burst >= 0 then
      update[#update + 1] = 'bl'
      update[#update + 1] = string.format('%.9f', s.level - 1)
      update[#update + 1] = 'bt'
      update[#update + 1] = string.format('%.6f', now)
    end
    redis.call('HSET', s.h, unpack(update))
    -- A bucket's first request (at most once a second): index it, push the expiry back.
    if s.amounts[5] == 1 then redis.call('ZADD', s.z[1], s.index[1], s.index[1]) end
    if s.amounts[7] == 1 then redis.call('ZADD', s.z[2], s.index[2], s.index[2]) end
    if s.amounts[5] == 1 or s.amounts[7] == 1 then keep(s) end
    s.newest = s.index
    count_wait(s)
  end
elseif reject then
  for _, s in ipairs(subjects) do
    redis.call('HINCRBY', s.h, 'sx', 1)
    count_wait(s)
    keep(s)
  end
end

local answer = {admitted and 1 or 0, refused, refused_limit, string.format('%.6f', retry_at)}
for _, s in ipairs(subjects) do
  for j, w in ipairs(WINDOWS) do
    local newest = s.newest and s.newest[j] or tonumber(redis.call('ZRANGE', s.z[j], -1, -1)[1])
    local resets_at = now
    if newest then resets_at = (newest + w.length / w.bucket + 1) * w.bucket end
    answer[#answer + 1] = string.format('%d', s.amounts[2 * j - 1])
    answer[#answer + 1] = string.format('%d', s.amounts[2 * j])
    answer[#answer + 1] = string.format('%.6f', resets_at)
  end
end
return table.concat(answer, ' ')
"""
)

# KEYS: per subject its hash, minute set, day set. ARGV: delta, minute index, day index.
_SETTLE = """
local delta = tonumber(ARGV[1])
local names = {'m', 'd'}
for i = 1, #KEYS / 3 do
  local h = KEYS[3 * i - 2]
  for j = 1, 2 do
    local index = ARGV[1 + j]
    if redis.call('ZSCORE', KEYS[3 * i - 2 + j], index) then
      local field = names[j] .. 't' .. index
      local charged = tonumber(redis.call('HGET', h, field)) or 0
      local settled = math.max(0, charged + delta)
      redis.call('HINCRBY', h, field, settled - charged)
      redis.call('HINCRBY', h, names[j] .. 't', settled - charged)
    end
  end
end
return 1
"""

# KEYS: per subject its hash, minute set, day set. ARGV: now.
_COUNTS = (
    _PRELUDE
    + """
local now = tonumber(ARGV[1])
local answer = {}
for i = 1, #KEYS / 3 do
  local h = KEYS[3 * i - 2]
  prune(h, KEYS[3 * i - 1], WINDOWS[1], now)
  prune(h, KEYS[3 * i], WINDOWS[2], now)
  local values = redis.call('HMGET', h, 'mr', 'dr', 'mt', 'dt', 'sx', 'sq')
  for _, value in ipairs(values) do answer[#answer + 1] = tonumber(value) or 0 end
  answer[#answer + 1] = redis.call('HGET', h, 'sw') or '0'
end
return answer
"""
)


class RedisRateLimitStore:
    """Counts in Redis, shared by every process that uses the same prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._attempt = redis.register_script(_ATTEMPT)
        self._settle = redis.register_script(_SETTLE)
        self._counts = redis.register_script(_COUNTS)

    def _keys(self, subject: str) -> list[str]:
        return [f"{self._prefix}{kind}:{subject}" for kind in ("h", "m", "d")]

    async def attempt(self, attempt: Attempt) -> Outcome:
        waited_ms = -1 if attempt.waited_ms is None else attempt.waited_ms
        keys = [f"{self._prefix}subjects"]
        args = [
            f"{attempt.now!r} {attempt.tokens} {int(attempt.take)} "
            f"{int(attempt.count_rejection)} {waited_ms!r} {SUBJECT_TTL_S}"
        ]
        for name, limits in attempt.checks.items():
            keys += self._keys(name)
            args += [name, " ".join(map(str, limits.as_args()))]
        answer = _text(await self._attempt(keys=keys, args=args)).split(" ")
        admitted = answer[0] == "1"
        refused_index = int(answer[1])
        names = list(attempt.checks)
        usage = {}
        for i, name in enumerate(names):
            row = answer[4 + 6 * i : 10 + 6 * i]
            minute = WindowUsage(int(row[0]), int(row[1]), float(row[2]))
            day = WindowUsage(int(row[3]), int(row[4]), float(row[5]))
            usage[name] = (minute, day)
        return Outcome(
            admitted=admitted,
            refused_subject=names[refused_index - 1] if refused_index else None,
            refused_limit=answer[2] if refused_index else None,
            retry_at=None if admitted else float(answer[3]),
            usage=usage,
            charged_at=attempt.now if admitted and attempt.take else None,
        )

    async def settle(self, subjects: list[str], charged_at: float, delta: int) -> bool:
        keys = [key for name in subjects for key in self._keys(name)]
        indexes = [bucket_index(charged_at, bucket_s) for _, _, bucket_s in WINDOWS]
        await self._settle(keys=keys, args=[delta, *indexes])
        return True

    async def counts(self, subjects: list[str] | None, now: float) -> list[SubjectCounts]:
        if subjects is None:
            known = f"{self._prefix}subjects"
            await self._redis.zremrangebyscore(known, "-inf", f"({now - SUBJECT_TTL_S}")
            subjects = sorted(_text(name) for name in await self._redis.zrange(known, 0, -1))
        if not subjects:
            return []
        keys = [key for name in subjects for key in self._keys(name)]
        answer = await self._counts(keys=keys, args=[repr(now)])
        found = []
        for i, name in enumerate(subjects):
            row = answer[7 * i : 7 * i + 7]
            found.append(SubjectCounts(name, *(int(value) for value in row[:6]), float(row[6])))
        return found


def _text(value: bytes | str) -> str:
    """Redis answers bytes unless the client decodes them."""
    return value.decode() if isinstance(value, bytes) else value
