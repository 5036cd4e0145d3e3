
-- Reads the state, changing nothing. ARGV: recovery interval (us). Returns {slow-down,
-- pause left (us)}.
local now = now_us()
local s = load(now)
recover(s, now, tonumber(ARGV[1]))
return {s.slow, math.max(0, s.pause - now)}
