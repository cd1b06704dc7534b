-- wrk script: POST /api/chat/send as a fresh user each time (each new user
-- has a full FREE allowance), so every request reaches the coach.
-- `thread_index` is a global set per thread by setup(): a local here would
-- shadow it and make every thread send the same user ids.
local next_index = 0
setup = function(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
end
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"userId":"bench-%s-%d-%d","message":"Comment gagner en confiance ?"}',
    tostring(thread_index), counter, os.time())
  return wrk.format("POST", "/api/chat/send",
                    {["Content-Type"] = "application/json"}, body)
end
