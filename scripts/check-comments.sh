#!/usr/bin/env bash
# Rejects TODO/FIXME/XXX comments, and `// Task N: ...` or `// Task N.M: ...`
# comments longer than 42 characters (from the `//`), in Go files. Usage:
#   scripts/check-comments.sh        the Go files git tracks or is about to
#   scripts/check-comments.sh DIR    every Go file under DIR
set -euo pipefail
if [ $# -gt 0 ]; then
  files=$(find "$1" -name '*.go' -type f | sort)
else
  cd "$(dirname "$0")/.."
  files=$(git ls-files --cached --others --exclude-standard -- '*.go')
fi
status=0
[ -z "$files" ] && exit 0
if grep -nHE '(//|/\*).*\b(TODO|FIXME|XXX)\b' $files; then
  echo "check-comments: write future work as a short '// Task N: what' comment or in the issue note, not TODO/FIXME." >&2
  status=1
fi
long=$( (grep -nHE '//[[:space:]]*Task [0-9]+(\.[0-9]+)*:' $files || true) | awk -F: '{
  line=$0; sub(/^[^:]*:[^:]*:/, "", line);
  i=index(line, "//"); c=substr(line, i);
  if (length(c) > 42) print $1 ":" $2 ": " c " (" length(c) " characters)"
}')
if [ -n "$long" ]; then
  echo "$long"
  echo "check-comments: '// Task N: ...' and '// Task N.M: ...' comments are 42 characters at most." >&2
  status=1
fi
exit $status
