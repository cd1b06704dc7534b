#!/usr/bin/env bash
# Mints a development token (HS256) for USER, signed with the secret that
# coach-server checks (COACH_JWT_SECRET), valid for TTL seconds (1 hour):
#   COACH_JWT_SECRET=... ./tools/dev-token.sh alice [TTL]
# COACH_JWT_ISSUER / COACH_JWT_AUDIENCE, when set, go into iss / aud.
# The HMAC is OpenSSL's (openssl dgst); for development only: production
# tokens come from your identity provider. The secret is passed to openssl
# on its command line, visible to local `ps` while it runs.
set -euo pipefail
user=${1:?usage: COACH_JWT_SECRET=... tools/dev-token.sh USER [TTL_SECONDS]}
ttl=${2:-3600}
secret=${COACH_JWT_SECRET:?set COACH_JWT_SECRET, the secret coach-server checks}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# A JSON string: backslashes and quotes escaped; control characters refused.
json_string() {
  if [[ $1 == *[[:cntrl:]]* ]]; then
    echo "dev-token: control characters are not allowed" >&2
    exit 2
  fi
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

now=$(date +%s)
claims="{\"sub\":$(json_string "$user"),\"iat\":$now,\"exp\":$((now + ttl))"
[[ -n ${COACH_JWT_ISSUER:-} ]] && claims+=",\"iss\":$(json_string "$COACH_JWT_ISSUER")"
[[ -n ${COACH_JWT_AUDIENCE:-} ]] && claims+=",\"aud\":$(json_string "$COACH_JWT_AUDIENCE")"
claims+="}"

signing_input="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '%s' "$claims" | b64url)"
signature=$(printf '%s' "$signing_input" |
  openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)
printf '%s.%s\n' "$signing_input" "$signature"
