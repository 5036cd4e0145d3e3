
-- One call asks for a slot. ARGV: spacing (us, 0 = no limit), burst, recovery interval
-- (us), the state's time to live (ms). Returns {wait (us, 0 = go now), slow-down, now}.
local now = now_us()
local spacing = tonumber(ARGV[1])
local s = load(now)
recover(s, now, tonumber(ARGV[3]))
local wait = 0
if s.pause > now then
  wait = s.pause - now
elseif spacing > 0 then
  local base = math.max(s.tat, now)
  local tolerance = spacing * (tonumber(ARGV[2]) - 1)
  if base - now > tolerance then
    wait = base - now - tolerance
  else
    s.tat = base + spacing * s.slow
  end
end
if wait == 0 then s.step = 1 end
save(s, ARGV[4])
return {wait, s.slow, now}
