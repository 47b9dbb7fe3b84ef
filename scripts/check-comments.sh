#!/usr/bin/env bash
# Rejects TODO/FIXME/XXX comments and `// Task N: ...` comments longer than
# 42 characters in Go files tracked or about to be tracked by git.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files --cached --others --exclude-standard -- '*.go')
[ -z "$files" ] && exit 0
if grep -nE '(//|/\*).*\b(TODO|FIXME|XXX)\b' $files; then
  echo "check-comments: write future work as a short '// Task N: what' comment or in the issue note, not TODO/FIXME." >&2
  status=1
fi
long=$( (grep -nE '//[[:space:]]*Task [0-9]+:' $files || true) | awk -F: '{
  line=$0; sub(/^[^:]*:[^:]*:/, "", line);
  i=index(line, "//"); c=substr(line, i);
  if (length(c) > 42) print $1 ":" $2 ": " c " (" length(c) " characters)"
}')
if [ -n "$long" ]; then
  echo "$long"
  echo "check-comments: '// Task N: ...' comments are 42 characters at most." >&2
  status=1
fi
exit $status
