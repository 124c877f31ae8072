"""Lua scripts of the Redis store: each cap check and its write happen atomically in Redis.

Key layout (all under one hash tag, so a Redis Cluster keeps them in one slot):

    P:hist        list  of envelope bodies, capped at history_limit (RPUSH + LTRIM)
    P:stats       hash  messages, bytes (queued totals), seq (queue order), tseq (task order),
                    version (bumped by every write: orders the counter snapshots)
    P:queues      zset  recipient -> last touched (ms); its size is the number of queues
    P:q:<r>       zset  envelope id -> seq (queue order of recipient r)
    P:qb:<r>      hash  envelope id -> "<size>\\n<body>"
    P:tmeta       hash  task id -> JSON {i: [intent JSON...], p: [participant JSON...], u: timestamp}
    P:tbody       hash  task id -> last envelope body
    P:tfirst      zset  task id -> order first seen (the first seen is evicted first)

Every script returns the fresh counters and their version, so the store's ``stats()`` snapshot
costs nothing and replies that arrive out of order never roll it back.
"""

from __future__ import annotations

__all__ = ("ACCEPT", "ACK", "DROP_QUEUE")

_COUNTERS = """
local function counters(stats, queues, hist)
  local m = redis.call('HMGET', stats, 'messages', 'bytes')
  local version = redis.call('HINCRBY', stats, 'version', 1)
  local queued, bytes = tonumber(m[1] or '0'), tonumber(m[2] or '0')
  return {redis.call('ZCARD', queues), queued, bytes, redis.call('LLEN', hist), version}
end
local function entry_size(v)
  return tonumber(string.sub(v, 1, string.find(v, '\\n', 1, true) - 1))
end
"""

ACCEPT = (
    _COUNTERS
    + """
-- KEYS: hist stats queues tmeta tbody tfirst, then (q, qb) per recipient
-- ARGV: body size id now history_limit max_queue max_queues max_bytes
--       task intent from to timestamp, then the recipients
local hist, stats, queues = KEYS[1], KEYS[2], KEYS[3]
local body, size, id, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local hlimit, maxq = tonumber(ARGV[5]), tonumber(ARGV[6])
local nrec = (#KEYS - 6) / 2
local new = 0
for i = 1, nrec do
  if not redis.call('ZSCORE', queues, ARGV[13 + i]) then new = new + 1 end
end
if new > 0 and redis.call('ZCARD', queues) + new > tonumber(ARGV[7]) then return {-1} end
local bytes = tonumber(redis.call('HGET', stats, 'bytes') or '0')
if nrec > 0 and bytes + size * nrec > tonumber(ARGV[8]) then return {-2} end

redis.call('RPUSH', hist, body)
redis.call('LTRIM', hist, -hlimit, -1)
local dropped = 0
local value = ARGV[2] .. '\\n' .. body
for i = 1, nrec do
  local qk, bk, r = KEYS[5 + 2 * i], KEYS[6 + 2 * i], ARGV[13 + i]
  redis.call('ZADD', queues, now, r)
  -- one entry per id (the newest copy wins), else the oldest entry makes room
  local old = nil
  if redis.call('ZREM', qk, id) == 1 then
    old = id
  elseif redis.call('ZCARD', qk) >= maxq then
    old = redis.call('ZPOPMIN', qk)[1]
    dropped = dropped + 1
  end
  if old then
    local oldsize = entry_size(redis.call('HGET', bk, old))
    redis.call('HDEL', bk, old)
    redis.call('HINCRBY', stats, 'messages', -1)
    redis.call('HINCRBY', stats, 'bytes', -oldsize)
  end
  redis.call('ZADD', qk, redis.call('HINCRBY', stats, 'seq', 1), id)
  redis.call('HSET', bk, id, value)
  redis.call('HINCRBY', stats, 'messages', 1)
  redis.call('HINCRBY', stats, 'bytes', size)
end

local task = ARGV[9]
if task ~= '' then
  local tmeta, tbody, tfirst = KEYS[4], KEYS[5], KEYS[6]
  local raw = redis.call('HGET', tmeta, task)
  local meta
  if raw then
    meta = cjson.decode(raw)
  else
    meta = {i = {}, p = {}}
    redis.call('ZADD', tfirst, redis.call('HINCRBY', stats, 'tseq', 1), task)
    if redis.call('ZCARD', tfirst) > hlimit then  -- beyond history_limit tasks, the first seen goes
      local gone = redis.call('ZPOPMIN', tfirst)[1]
      redis.call('HDEL', tmeta, gone)
      redis.call('HDEL', tbody, gone)
    end
  end
  local function add(list, item)
    if #list >= 256 then return end  -- MAX_TASK_MEMBERS, as in the memory store
    for _, v in ipairs(list) do if v == item then return end end
    table.insert(list, item)
  end
  add(meta.i, ARGV[10])
  if ARGV[11] ~= 'null' then add(meta.p, ARGV[11]) end
  if ARGV[12] ~= 'null' then add(meta.p, ARGV[12]) end
  meta.u = ARGV[13]
  redis.call('HSET', tmeta, task, cjson.encode(meta))
  redis.call('HSET', tbody, task, body)
end
local c = counters(stats, queues, hist)
return {dropped, c[1], c[2], c[3], c[4], c[5]}
"""
)

ACK = (
    _COUNTERS
    + """
-- KEYS: hist stats queues q qb;  ARGV: recipient now ids...
local hist, stats, queues, qk, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n, freed = 0, 0
for i = 3, #ARGV do
  local v = redis.call('HGET', bk, ARGV[i])
  if v then
    redis.call('HDEL', bk, ARGV[i])
    redis.call('ZREM', qk, ARGV[i])
    n = n + 1
    freed = freed + entry_size(v)
  end
end
if n > 0 then
  redis.call('HINCRBY', stats, 'messages', -n)
  redis.call('HINCRBY', stats, 'bytes', -freed)
  redis.call('ZADD', queues, 'XX', ARGV[2], ARGV[1])
end
if redis.call('ZCARD', qk) == 0 then redis.call('ZREM', queues, ARGV[1]) end
local c = counters(stats, queues, hist)
return {n, c[1], c[2], c[3], c[4], c[5]}
"""
)

DROP_QUEUE = (
    _COUNTERS
    + """
-- KEYS: hist stats queues q qb;  ARGV: recipient cutoff (drop only if still untouched since cutoff)
local hist, stats, queues, qk, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local touched = redis.call('ZSCORE', queues, ARGV[1])
local dropped = 0
if touched and tonumber(touched) <= tonumber(ARGV[2]) then
  local freed, n = 0, 0
  for _, v in ipairs(redis.call('HVALS', bk)) do
    freed = freed + entry_size(v)
    n = n + 1
  end
  redis.call('DEL', qk, bk)
  redis.call('ZREM', queues, ARGV[1])
  redis.call('HINCRBY', stats, 'messages', -n)
  redis.call('HINCRBY', stats, 'bytes', -freed)
  dropped = 1
end
local c = counters(stats, queues, hist)
return {dropped, c[1], c[2], c[3], c[4], c[5]}
"""
)
