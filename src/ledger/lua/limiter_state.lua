-- The shared rate limiter's state: one hash per account and method (KEYS[1]), times in
-- microseconds on Redis's own clock, so that every replica shares one clock.
--   tat    the GCRA's theoretical arrival time of the next call (the main stream)
--   rtat   the same for the urgent reserve's stream, when the limiter has one
--   pause  no call before then (a 429's pause)
--   slow   calls are spaced this many times further apart (1, 2, 4, … max_slowdown)
--   calm   recovery counts from here (the end of the last pause, or the last halving)
--   step   1 once a call was let through since the last slow-down step
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function load(now)
  local v = redis.call('HMGET', KEYS[1], 'tat', 'pause', 'slow', 'calm', 'step', 'rtat')
  return {
    tat = tonumber(v[1]) or 0,
    pause = tonumber(v[2]) or 0,
    slow = tonumber(v[3]) or 1,
    calm = tonumber(v[4]) or now,
    step = tonumber(v[5]) or 1,
    rtat = tonumber(v[6]) or 0,
  }
end

-- Integers past 2^31 keep every digit only through %.0f.
local function save(s, ttl_ms)
  redis.call('HSET', KEYS[1],
    'tat', string.format('%.0f', s.tat),
    'pause', string.format('%.0f', s.pause),
    'slow', string.format('%.0f', s.slow),
    'calm', string.format('%.0f', s.calm),
    'step', string.format('%.0f', s.step),
    'rtat', string.format('%.0f', s.rtat))
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end

-- Halves the slow-down for each full recovery interval without a 429.
local function recover(s, now, interval)
  if s.slow <= 1 or now < s.calm then return end
  local periods = math.floor((now - s.calm) / interval)
  if periods < 1 then return end
  if periods > 31 then periods = 31 end
  s.slow = math.max(1, math.floor(s.slow / 2 ^ periods))
  if s.slow == 1 then s.calm = now else s.calm = s.calm + interval * periods end
end

-- How long until a caller allowed `burst` cells at once may take a cell of the stream
-- whose next cell is due at `tat` (0: now).
local function cell_wait(tat, spacing, burst, now)
  local ahead = math.max(tat, now) - now
  local tolerance = spacing * (burst - 1)
  if ahead > tolerance then return ahead - tolerance end
  return 0
end
