-- wrk script: send.lua's POST /api/chat/send, each request with an
-- Idempotency-Key of its own (as a client that keys every message), so each
-- one claims a key, runs and completes it: the cost of the keys next to
-- send.lua's figure.
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
    '{"userId":"bench-key-%s","message":"Comment gagner en confiance ?"}', id)
  return wrk.format("POST", "/api/chat/send",
                    {["Content-Type"] = "application/json",
                     ["Idempotency-Key"] = "key-" .. id}, body)
end
