#!/usr/bin/env bash
# GET /openapi.json of the real coach-proxy, validated by two independent
# validators from npm (tools/npm-tools.sh): swagger-parser (OpenAPI schema,
# $refs, operationIds, path parameters) and Redocly CLI's lint (its
# recommended rules). Then what the document must say about our API: every
# route the proxy logs at start, JSON names, proto3 JSON types, the error
# statuses with the documented body, the event stream, the proto comments.
# Last, a typed client: openapi-typescript generates the document's types,
# and a program that reads the answers' always-present fields without `?.`
# and narrows a stream event to {delta} or {reply} compiles under
# `tsc --strict`.
#   openapi_test.sh <coach-server> <coach-proxy> <tools/npm folder>
set -euo pipefail
npm_dir=$3
source "$(dirname "$0")/lib/stack.sh"
start_stack "$1" "$2"
doc="$dir/openapi.json"

status=$(curl -sS -o "$doc" -w '%{http_code} %{content_type}' "$base/openapi.json")
[[ $status == "200 application/json; charset=utf-8" ]] || fail "GET /openapi.json: $status"

echo "== swagger-parser validate"
node "$npm_dir/validate-openapi.js" "$doc" || fail "swagger-parser"
echo "== redocly lint"
(cd "$dir" && "$npm_dir/node_modules/.bin/redocly" lint --config "$npm_dir/redocly.yaml" openapi.json 2>&1) \
  || fail "redocly lint"

q() { jq -e "$@" "$doc" >/dev/null || fail "openapi.json: $*"; }

# Every route of the route table (logged at start) is a path and method.
routes=$(sed -n 's/.*route \([A-Z]*\) \(\/[^ ]*\) -> .*/\1 \2/p' "$dir/proxy.log")
[[ $(wc -l <<<"$routes") -ge 9 ]] || fail "routes logged: $routes"
while read -r method path; do
  # {session_id} -> {sessionId}: the JSON name.
  json_path=$(sed -E 's/\{session_id\}/{sessionId}/' <<<"$path")
  verb=$(tr 'A-Z' 'a-z' <<<"$method")
  q --arg p "$json_path" --arg v "$verb" '.paths[$p][$v].operationId'
done <<<"$routes"
for p in /healthz /readyz /openapi.json; do q --arg p "$p" '.paths[$p].get'; done
# The metrics are on their own listener (COACH_PROXY_METRICS_LISTEN), not in the API.
q '.paths | has("/metrics") | not'

# Parameters: path (JSON name), query (the fields not in path nor body), body.
q '.paths["/api/chat/sessions/{sessionId}"].get.parameters | map(select(.in=="path" and .name=="sessionId" and .required)) | length == 1'
q '.paths["/api/chat/sessions/{sessionId}"].patch.requestBody.content["application/json"].schema.properties | has("title") and (has("sessionId") | not)'
q '.paths["/api/chat/history"].get.parameters | map(select(.in=="query") | .name) | index("userId") and index("limit")'
q '.paths["/api/chat/history"].get.parameters[] | select(.name=="limit") | .schema.type == "integer"'
q '.paths["/api/chat/send"].post.requestBody.content["application/json"].schema["$ref"] == "#/components/schemas/coach.v1.SendMessageRequest"'

# Schemas in protobuf's JSON mapping.
q '.components.schemas["coach.v1.ChatMessage"].properties.createdAt.format == "date-time"'
q '.components.schemas["coach.v1.ChatMessage"].properties.role["$ref"] == "#/components/schemas/coach.v1.Role"'
q '.components.schemas["coach.v1.Role"].enum == ["ROLE_UNSPECIFIED","USER","ASSISTANT"]'
q '.components.schemas["coach.v1.SessionSummary"].properties | has("lastMessage") and has("messageCount")'
# proto3 optional: not required; always-printed fields: required.
q '.components.schemas["coach.v1.SendMessageResponse"].required | index("sessionId") and (index("remainingCredits") | not)'
# Always set by the server (google.api.field_behavior): required.
q '.components.schemas["coach.v1.SendMessageResponse"].required | index("userMessage") and index("assistantMessage")'
q '.components.schemas["coach.v1.ChatMessage"].required | index("createdAt")'
q '.components.schemas["coach.v1.GetUserStatsResponse"].required == ["stats"]'
# An event is exactly one of delta and reply: a union, not "or nothing".
q '.components.schemas["coach.v1.StreamMessageResponse"].oneOf | length == 2'
q '.components.schemas["coach.v1.StreamMessageResponse"].oneOf[0].required == ["delta"]'

# Errors: every documented status, the documented body with `field`.
# The HTTP layer's refusals too (414, 431; 411 where a body is taken).
for s in 400 401 403 404 414 429 431 500 503; do
  q --arg s "$s" '.paths["/api/chat/sessions"].get.responses[$s]["$ref"]'
done
for s in 402 409 411 413 415; do
  q --arg s "$s" '.paths["/api/chat/send"].post.responses[$s]["$ref"]'
done
q '.paths["/api/chat/sessions"].get.responses | has("411") | not'
q '.components.responses.UriTooLong.description | contains("INVALID_ARGUMENT")'
q '.components.responses.RequestHeaderFieldsTooLarge.description | contains("HEADERS_TOO_LARGE")'
q '.components.responses.LengthRequired.description | contains("LENGTH_REQUIRED")'
q '.components.schemas.ErrorBody.required == ["error","code","message"]'
q '.components.schemas.ErrorBody.properties | has("field")'
q '.components.schemas["coach.v1.ErrorReason"].enum | index("NO_CREDITS") and index("RATE_LIMITED")'
q '.components.responses.TooManyRequests.headers | has("Retry-After")'
q '.components.responses.Unauthorized.headers | has("WWW-Authenticate")'
q '.components.responses.PaymentRequired.description | contains("NO_CREDITS")'
q '.components.responses.Conflict.description | contains("IDEMPOTENCY_IN_PROGRESS") and contains("SESSION_LIMIT_REACHED")'

# The server stream as Server-Sent Events.
q '.paths["/api/chat/send/stream"].post.responses["200"].content | has("text/event-stream")'
# The headers a method declares (coach.v1.request_headers/response_headers).
for route in /api/chat/send /api/chat/send/stream; do
  q --arg r "$route" '.paths[$r].post.parameters | map(select(.in == "header" and .name == "Idempotency-Key")) | length == 1'
  q --arg r "$route" '.paths[$r].post.responses["200"].headers | has("Idempotent-Replayed")'
done
q '.paths["/api/chat/sessions"].post.parameters | map(select(.name == "Idempotency-Key")) | length == 0'
q '.paths["/api/chat/send/stream"].post.responses["200"].content["text/event-stream"].schema.type == "string"'
q '.paths["/api/chat/send/stream"].post.responses["200"].content["text/event-stream"]["x-event-schema"]["$ref"] == "#/components/schemas/coach.v1.StreamMessageResponse"'

# The proto comments as descriptions (SourceCodeInfo).
q '.paths["/api/chat/sessions"].get.description | startswith("Lists a user'"'"'s sessions")'
q '.components.schemas["coach.v1.SendMessageRequest"].properties.sessionId.description == "Empty: start a new session."'
q '.components.schemas["coach.v1.ErrorReason"].description | contains("`NO_CREDITS`: No credit left this month")'
q '.tags[] | select(.name=="ChatService") | .description | startswith("Conversations and messages")'
echo "openapi test: OK"

# --- A typed client (openapi-typescript, tsc --strict) ----------------------
echo "== openapi-typescript, tsc --strict"
"$npm_dir/node_modules/.bin/openapi-typescript" "$doc" -o "$dir/api.d.ts" \
  >"$dir/openapi-typescript.log" 2>&1 ||
  { cat "$dir/openapi-typescript.log"; fail "openapi-typescript"; }
cat >"$dir/client.ts" <<'TS'
import type { components, paths } from "./api";

type Json<P extends keyof paths, M extends keyof paths[P]> =
  paths[P][M] extends { responses: { 200: { content: { "application/json": infer B } } } }
    ? B : never;
type Schemas = components["schemas"];

// A send's answer: both messages and their dates are always there.
export function lastLine(sent: Json<"/api/chat/send", "post">): string {
  const reply: Schemas["coach.v1.ChatMessage"] = sent.assistantMessage;
  return `${sent.sessionId} ${sent.userMessage.createdAt} ${reply.content}`;
}

// Credits are absent on an unlimited plan: the type says so.
export function credits(stats: Json<"/api/user/stats", "get">): number {
  return stats.stats.remainingCredits ?? Infinity;
}

// A session's dates, and its messages.
export function opened(got: Json<"/api/chat/sessions/{sessionId}", "get">): string {
  return got.session.createdAt + got.session.messages.length;
}

// A stream event is a piece of text or the stored reply, never both.
export function text(event: Schemas["coach.v1.StreamMessageResponse"]): string {
  return "delta" in event ? event.delta : event.reply.assistantMessage.content;
}

// The idempotency key is a header parameter of the send.
export const key: NonNullable<
  paths["/api/chat/send"]["post"]["parameters"]["header"]
>["Idempotency-Key"] = "k-1";
TS
"$npm_dir/node_modules/.bin/tsc" --strict --noEmit --target es2020 \
  --module es2020 --moduleResolution node "$dir/client.ts" ||
  fail "the typed client does not compile under tsc --strict"
echo "openapi test: OK"
