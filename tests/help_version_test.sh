#!/usr/bin/env bash
# --help and --version of the real binaries: both exit 0; --version prints
# "<binary> <version> (<build type>)"; and README.md's settings tables are
# the --help tables, byte for byte: each sits between
# `<!-- settings:<binary> -->` and `<!-- /settings -->`. Fails, with the diff,
# when a setting, a default or a help text drifts from the README.
#   help_version_test.sh <README.md> "<version> (<build type>)" <binary>...
# With WRITE_README=1 in the environment, rewrites README.md's tables instead.
set -euo pipefail
readme=$1
version=$2
shift 2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
status=0
for binary in "$@"; do
  name=$(basename "$binary")
  "$binary" --version >"$dir/version" || fail "$name --version exited $?"
  [[ $(<"$dir/version") == "$name $version" ]] ||
    fail "$name --version printed '$(<"$dir/version")', not '$name $version'"

  "$binary" --help >"$dir/help" || fail "$name --help exited $?"
  grep '^|' "$dir/help" >"$dir/table" || fail "$name --help prints no table"
  begin="<!-- settings:$name -->"
  end="<!-- /settings -->"
  grep -qxF "$begin" "$readme" || fail "no '$begin' line in $readme"
  if [[ ${WRITE_README:-} == 1 ]]; then
    awk -v begin="$begin" -v end="$end" -v table="$dir/table" '
      $0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
      skip && $0 == end { skip = 0 }
      !skip { print }' "$readme" >"$dir/readme"
    cp "$dir/readme" "$readme"
    continue
  fi
  awk -v begin="$begin" -v end="$end" '
    $0 == begin { inside = 1; next }
    inside && $0 == end { found = 1; exit }
    inside { print }
    END { exit !found }' "$readme" >"$dir/readme_table" ||
    fail "no '$end' line after '$begin' in $readme"
  if ! diff -u --label "README.md ($name)" --label "$name --help" \
      "$dir/readme_table" "$dir/table"; then
    echo "FAIL: README.md's $name settings differ from \`$name --help\`;" \
         "rewrite them: WRITE_README=1 $0 $readme '$version' $*" >&2
    status=1
  fi
done
exit $status
