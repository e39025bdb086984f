"""The Lua scripts of the Redis queue: each one atomic step on keys of one hash slot.

The lane scripts carry out `aitasks.priority` exactly as `queue/lanes.py` does in memory (the
contract tests hold both to it): a queue's waiting work sits in per-(lane, tenant) lists with a
ring of tenants per lane; a receive moves what it hands out into the queue's stream and reads it
there through the consumer group, so from then on an entry is what it always was (pending until
acknowledged, reclaimed when its consumer dies). Every key of one queue carries its hash tag, so
each script stays on one cluster node; the names of tenants' lists are made inside the scripts
from the queue's key base (`redis_keys.queue_key_base`), the way `redis_keys` makes them.
"""

from __future__ import annotations

from aitasks.priority import LANES, SCHEDULE, SHARE_CYCLE
from aitasks.redis_keys import BELL_LENGTH, TASK_FIELD, TRACE_FIELD

# Entries of one publish at most (Lua's unpack has a limit of a few thousand).
PUBLISH_CHUNK = 1000

# Appends entries (`task id|traceparent|weight`) to one tenant's list in one lane, puts the tenant
# in the lane's ring at the lane's clock when it was not there, counts them, and rings the bell.
# KEYS: lanes hash, ring, the tenant's list, bell. ARGV: lane, tenant, entries...
PUBLISH_SCRIPT = f"""
local lane, tenant = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', KEYS[2], tenant) then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'clock:' .. lane) or 0, tenant)
end
redis.call('RPUSH', KEYS[3], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'n:' .. lane, #ARGV - 2)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', {BELL_LENGTH}, '*', 'n', #ARGV - 2)
return 1
"""

_LANE_NAMES = ", ".join(f"'{lane}'" for lane in LANES)
_SCHEDULE = ", ".join(str(LANES.index(lane) + 1) for lane in SCHEDULE)

# Hands out up to ARGV[3] entries of several queues of one slot to a consumer, as
# `queue/lanes.take` does: first any entry a stream holds that the group has not handed out (one
# an earlier receive moved but did not read, or one published straight into the stream by an
# older version); then, one pick at a time, the queue whose scheduled lane is highest, and in that
# lane the tenant with the lowest pass, whose oldest entry is moved into the stream. The moved
# entries are then read through the group (they are the only new ones), so they are pending
# under this consumer like any delivery.
# KEYS: for each queue, its stream, lanes hash and bell. ARGV: group, consumer, count, the lanes
# it may take from (a mask of 1s and 0s in `LANES` order; with some left out, entries already in
# a stream, of any lane, are left for another read), then each queue's key base. Returns
# {read, last}: `read` holds {queue number, entries} per stream that gave some; when none did,
# `last` holds each queue's bell's last id ('0-0' when it has none), from which an XREAD can wait
# for the next publish.
TAKE_SCRIPT = f"""
local group, consumer, left, allowed = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local LANES = {{{_LANE_NAMES}}}
local SCHEDULE = {{{_SCHEDULE}}}
local queues = #KEYS / 3
local read, moved = {{}}, {{}}
for q = 1, queues do
  if left <= 0 or string.find(allowed, '0') then break end
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left,
                         'STREAMS', KEYS[3 * q - 2], '>')
  if got then
    left = left - #got[1][2]
    table.insert(read, {{q, got[1][2]}})
  end
end
local function waiting(q, lane)
  return string.sub(allowed, lane, lane) == '1'
    and redis.call('EXISTS', ARGV[4 + q] .. 'ring:' .. LANES[lane]) == 1
end
while left > 0 do
  local best, best_lane = nil, nil
  for q = 1, queues do
    local picks = tonumber(redis.call('HGET', KEYS[3 * q - 1], 'picks') or '0')
    local lane = SCHEDULE[picks % {SHARE_CYCLE} + 1]
    if not waiting(q, lane) then
      lane = nil
      for l = 1, #LANES do
        if waiting(q, l) then lane = l break end
      end
    end
    if lane and (not best_lane or lane < best_lane) then best, best_lane = q, lane end
  end
  if not best then break end
  local lanes, name = KEYS[3 * best - 1], LANES[best_lane]
  local ring = ARGV[4 + best] .. 'ring:' .. name
  local top = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
  local tenant, pass = top[1], tonumber(top[2])
  local list = ARGV[4 + best] .. 'wait:' .. name .. ':' .. tenant
  local entry = redis.call('LPOP', list)
  local weight = 1
  redis.call('HINCRBY', lanes, 'picks', 1)
  redis.call('HSET', lanes, 'clock:' .. name, pass)
  if entry then
    local task, trace, w = string.match(entry, '^([^|]*)|([^|]*)|(%d+)$')
    weight = math.max(tonumber(w) or 1, 1)
    redis.call('HINCRBY', lanes, 'n:' .. name, -1)
    if trace ~= '' then
      redis.call('XADD', KEYS[3 * best - 2], '*', '{TASK_FIELD}', task, '{TRACE_FIELD}', trace)
    else
      redis.call('XADD', KEYS[3 * best - 2], '*', '{TASK_FIELD}', task)
    end
    moved[best] = (moved[best] or 0) + 1
    left = left - 1
  end
  if redis.call('LLEN', list) == 0 then
    redis.call('ZREM', ring, tenant)
  else
    redis.call('ZADD', ring, pass + 1 / weight, tenant)
  end
end
for q, n in pairs(moved) do
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n,
                         'STREAMS', KEYS[3 * q - 2], '>')
  if got then table.insert(read, {{q, got[1][2]}}) end
end
local last = {{}}
if #read == 0 then
  for q = 1, queues do
    local newest = redis.call('XREVRANGE', KEYS[3 * q], '+', '-', 'COUNT', 1)
    last[q] = newest[1] and newest[1][1] or '0-0'
  end
end
return {{read, last}}
"""

# A sliding-window rate limit in one atomic step, timed by the Redis server's clock (so workers on
# several machines agree); see `TaskQueue.rate_slot`. A slot in flight is scored by when its hold
# ends (so no window drops it), a dated one by when its call reached the provider. Returns 0 when
# the slot is taken, else the seconds until one may free (an undated slot frees one window after
# it is dated, no sooner than now). The key lasts one window past its latest score.
RATE_SLOT_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window, limit, held = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + held, ARGV[3])
  local latest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now + window) * 1000))
  return '0'
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return tostring(math.min(oldest, now) + window - now)
"""
# Dates a slot to the server's now: its call has reached the provider. (A slot dropped meanwhile,
# its hold long over, is counted again: the call did reach the provider now.)
RATE_REACHED_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
local latest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now + window) * 1000))
return 1
"""
