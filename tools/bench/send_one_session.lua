-- wrk script: POST /api/chat/send into one session, as one user. With TOKEN
-- set, the user is the token's (Authorization: Bearer); otherwise USER_ID
-- is named in the body (COACH_AUTH=none).
local token = os.getenv("TOKEN") or ""
local session = os.getenv("SESSION")
local user = os.getenv("USER_ID")
local headers = {["Content-Type"] = "application/json"}
if token ~= "" then headers["Authorization"] = "Bearer " .. token end
local who = token ~= "" and "" or string.format('"userId":"%s",', user)
local body = string.format(
  '{%s"sessionId":"%s","message":"Comment gagner en confiance ?"}', who, session)
request = function()
  return wrk.format("POST", "/api/chat/send", headers, body)
end
