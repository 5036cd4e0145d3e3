-- One call asks for a slot. ARGV: spacing of the main stream (us, 0 = no limit), burst,
-- recovery interval (us), the state's time to live (ms), spacing of the urgent reserve's
-- stream (us, 0 = no reserve), 1 for an urgent call. Returns {wait (us, 0 = go now),
-- slow-down, now}.
--
-- As in the per-process limiter (src/pushwoosh/limiter/budget.rs): a main cell comes
-- first for both priorities; then an urgent call may take the reserve's last cell (a
-- burst of 2), a bulk call only a cell beyond it (a burst of 1), so one reserve cell is
-- always left for the next urgent call however many bulk calls wait.
local now = now_us()
local spacing = tonumber(ARGV[1])
local rspacing = tonumber(ARGV[5]) or 0
local urgent = tonumber(ARGV[6]) == 1
local s = load(now)
recover(s, now, tonumber(ARGV[3]))
local wait = 0
if s.pause > now then
  wait = s.pause - now
elseif spacing > 0 then
  local main = cell_wait(s.tat, spacing, tonumber(ARGV[2]), now)
  if main == 0 then
    s.tat = math.max(s.tat, now) + spacing * s.slow
  elseif rspacing > 0 then
    local burst = 1
    if urgent then burst = 2 end
    local spare = cell_wait(s.rtat, rspacing, burst, now)
    if spare == 0 then
      s.rtat = math.max(s.rtat, now) + rspacing * s.slow
    else
      wait = math.min(main, spare)
    end
  else
    wait = main
  end
end
if wait == 0 then s.step = 1 end
save(s, ARGV[4])
return {wait, s.slow, now}
