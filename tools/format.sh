#!/usr/bin/env bash
# Formats the project's C++ with clang-format (.clang-format: Google's
# style), or checks it:
#   tools/format.sh          # rewrite the files that differ
#   tools/format.sh --check  # list them and fail (CI: tools/test.sh)
# Files: every tracked .cc and .h but third_party/ (not ours) and the
# generated code (not tracked).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '^third_party/')
if [[ ${1:-} == --check ]]; then
  clang-format --dry-run --Werror "${files[@]}" 2>&1 | grep -o '^[^:]*:' |
    sort -u | sed 's/:$//; s/^/needs formatting: /' >&2 || true
  clang-format --dry-run --Werror "${files[@]}" >/dev/null 2>&1
else
  clang-format -i "${files[@]}"
fi
