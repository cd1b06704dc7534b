#!/usr/bin/env bash
# --help, --helpfull and --version of the real binaries: all exit 0;
# --version prints "<binary> <version> (<build type>)"; README.md's settings
# tables are the --help tables (the essential settings) and
# docs/settings.md's the --helpfull tables (all of them), byte for byte: each
# sits between `<!-- settings:<binary> -->` and `<!-- /settings -->`. Fails,
# with the diff, when a setting, a default or a help text drifts from the
# docs.
#   help_version_test.sh <README.md> <docs/settings.md> \
#                        "<version> (<build type>)" <binary>...
# With WRITE_README=1 in the environment, rewrites both files' tables instead.
set -euo pipefail
readme=$1
settings_doc=$2
version=$3
shift 3
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
    if [[ $mode == help ]]; then doc=$readme; else doc=$settings_doc; fi
    "$binary" --$mode >"$dir/help" || fail "$name --$mode exited $?"
    grep '^|' "$dir/help" >"$dir/table" || fail "$name --$mode prints no table"
    begin="<!-- settings:$name -->"
    end="<!-- /settings -->"
    grep -qxF "$begin" "$doc" || fail "no '$begin' line in $doc"
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
    if ! diff -u --label "$(basename "$doc") ($name)" --label "$name --$mode" \
        "$dir/doc_table" "$dir/table"; then
      echo "FAIL: $doc's $name settings differ from \`$name --$mode\`;" \
           "rewrite them: WRITE_README=1 $0 $readme $settings_doc '$version' $*" >&2
      status=1
    fi
  done
done
exit $status
