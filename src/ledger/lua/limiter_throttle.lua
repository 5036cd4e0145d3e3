
-- Pushwoosh answered 429. ARGV: spacing (us, 0 = no limit), pause (us), max slow-down,
-- recovery interval (us), the state's time to live (ms). Every caller waits for the
-- pause; unless this 429 answers a call made before the last slow-down step (no call let
-- through since), calls are spaced twice as far apart. Returns {slow-down, 1 if this
-- 429 was a new step, pause left (us)}.
local now = now_us()
local s = load(now)
recover(s, now, tonumber(ARGV[4]))
local untl = now + tonumber(ARGV[2])
if untl > s.pause then s.pause = untl end
if untl > s.calm then s.calm = untl end
local fresh = s.step
if s.step == 1 then
  s.step = 0
  if tonumber(ARGV[1]) > 0 then
    s.slow = math.min(s.slow * 2, tonumber(ARGV[3]))
  end
end
save(s, ARGV[5])
return {s.slow, fresh, s.pause - now}
