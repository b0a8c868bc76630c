-- wrk script for bench/reliability.py: each connection is one client polling a job's status.
-- wrk -t2 -c<clients> -d<seconds>s --latency -s bench/wrk_status.lua <base>/v1/jobs/<id>
-- HARDNEG_LOAD_KEY: the API key; HARDNEG_LOAD_PACE: seconds between one client's polls.
-- Each wait is drawn from 0..2*pace (mean: pace), so the clients are not in step: independent
-- pollers do not all ask in the same millisecond, and a crowd starting together spreads out.
local pace_ms = tonumber(os.getenv("HARDNEG_LOAD_PACE") or "1") * 1000
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HARDNEG_LOAD_KEY")

function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init(args)
  math.randomseed(seed)
end

function delay()
  return math.random(0, 2 * pace_ms)
end
