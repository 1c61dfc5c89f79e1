-- wrk script for `cargo xtask bench` (see ../../BENCHMARKS.md).
--
-- wrk -t <threads> [opts] -s sessions.lua <url> -- <cookies-file> <threads> [path]
--
-- <cookies-file> holds one `Cookie:` header value per line, made before the
-- run (one session per connection, created by the warm-up). Each wrk thread
-- takes its own share of the lines and hands them out in turn, so with one
-- line per connection every connection has, in steady state, its own
-- session, and no session is created during the measured run.
--
-- done() prints one parseable line:
--   BENCH requests=.. duration_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=..
--         mean_us=.. errors_connect=.. errors_read=.. errors_write=..
--         errors_status=.. errors_timeout=..

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local next_request = 0

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open cookies file " .. tostring(args[1]))
  local thread_count = tonumber(args[2]) or 1
  local path = args[3] or "/"
  local index = 0
  local mine = {}
  for line in file:lines() do
    if #line > 0 then
      if index % thread_count == thread_index then
        table.insert(mine, line)
      end
      index = index + 1
    end
  end
  file:close()
  assert(#mine > 0, "no cookies for this thread")
  for i, cookie in ipairs(mine) do
    requests[i] = wrk.format("GET", path, { ["Cookie"] = cookie })
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f "
      .. "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
