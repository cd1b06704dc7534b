#!/usr/bin/env bash
# --help, --helpfull and --version of the real binaries: all exit 0;
# --version prints "<binary> <version> (<build type>)"; docs/settings.md's
# tables are the binaries' own, byte for byte: between
# `<!-- settings-essential:<binary> -->` and `<!-- /settings -->` the --help
# table (the essential settings), between `<!-- settings:<binary> -->` and
# `<!-- /settings -->` the --helpfull table (all of them). Fails, with the
# diff, when a setting, a default or a help text drifts from the docs.
#   help_version_test.sh <docs/settings.md> "<version> (<build type>)" \
#                        <binary>...
# With WRITE_README=1 in the environment, rewrites the tables instead (the
# name is from when the --help tables were in README.md).
set -euo pipefail
doc=$1
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

  for mode in help helpfull; do
    if [[ $mode == help ]]; then marker=settings-essential; else marker=settings; fi
    "$binary" --$mode >"$dir/help" || fail "$name --$mode exited $?"
    grep '^|' "$dir/help" >"$dir/table" || fail "$name --$mode prints no table"
    begin="<!-- $marker:$name -->"
    end="<!-- /settings -->"
    [[ $(grep -cxF "$begin" "$doc") == 1 ]] || fail "not one '$begin' line in $doc"
    if [[ ${WRITE_README:-} == 1 ]]; then
      awk -v begin="$begin" -v end="$end" -v table="$dir/table" '
        $0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
        skip && $0 == end { skip = 0 }
        !skip { print }' "$doc" >"$dir/doc"
      cp "$dir/doc" "$doc"
      continue
    fi
    awk -v begin="$begin" -v end="$end" '
      $0 == begin { inside = 1; next }
      inside && $0 == end { found = 1; exit }
      inside { print }
      END { exit !found }' "$doc" >"$dir/doc_table" ||
      fail "no '$end' line after '$begin' in $doc"
    if ! diff -u --label "$(basename "$doc") ($marker:$name)" --label "$name --$mode" \
        "$dir/doc_table" "$dir/table"; then
      echo "FAIL: $doc's $name table differs from \`$name --$mode\`;" \
           "rewrite the tables: WRITE_README=1 $0 $doc '$version' $*" >&2
      status=1
    fi
  done
done
exit $status
