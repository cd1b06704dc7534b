-- wrk script: POST /api/chat/send as a fresh user each time (each new user
-- has a full FREE allowance), so every request reaches the coach.
-- With COACH_BENCH_KEYED=1 each request also carries an Idempotency-Key of
-- its own (a client that keys every message): each one claims a key, runs
-- and completes it, for the cost of the keys next to the plain figure.
-- `thread_index` is a global set per thread by setup(): a local here would
-- shadow it and make every thread send the same user ids.
local keyed = os.getenv("COACH_BENCH_KEYED") == "1"
local next_index = 0
setup = function(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
end
local counter = 0
request = function()
  counter = counter + 1
  local id = string.format("%s-%d-%d", tostring(thread_index), counter,
                           os.time())
  local body = string.format(
    '{"userId":"bench-%s","message":"Comment gagner en confiance ?"}', id)
  local headers = {["Content-Type"] = "application/json"}
  if keyed then headers["Idempotency-Key"] = "key-" .. id end
  return wrk.format("POST", "/api/chat/send", headers, body)
end
