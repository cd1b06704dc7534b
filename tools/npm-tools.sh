#!/usr/bin/env bash
# Installs the pinned npm tools of tools/npm when missing or outdated: buf
# (lint the protos, curl the server through reflection), and the OpenAPI
# validators of openapi_test (@apidevtools/swagger-parser, @redocly/cli)
# with its typed client (openapi-typescript, typescript), and Prism
# (prism_test: the real answers against the document).
set -euo pipefail
cd "$(dirname "$0")/npm"
if [[ ! -x node_modules/.bin/buf || ! -x node_modules/.bin/redocly ||
      ! -x node_modules/.bin/openapi-typescript || ! -x node_modules/.bin/tsc ||
      ! -x node_modules/.bin/prism ||
      ! -d node_modules/@apidevtools/swagger-parser ||
      package-lock.json -nt node_modules/.package-lock.json ]]; then
  if ! command -v npm >/dev/null; then
    echo "npm-tools: npm is required (Debian: apt-get install npm)" >&2
    exit 1
  fi
  npm ci --silent --no-audit --no-fund
fi
