#!/usr/bin/env bash
# Times a newcomer's first hour: from `git clone` of this repository's HEAD
# to the first `make run` banner, then two `gosling dev simulate job`s.
# It runs make run's steps (make build, scripts/tools.sh temporal tofu,
# gosling validate, gosling dev) with free ports, in a scratch clone.
# Usage: scripts/first-run.sh [--cold]  (--cold: an empty Go build cache)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${1:-}" = "--cold" ]; then
  export GOCACHE="$work/gocache"
fi
now() { date +%s.%N; }
since() { echo "$2 - $1" | bc; }
free() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start=$(now)
git clone -q "$root" "$work/gosling"
cd "$work/gosling"
make build >"$work/build.log" 2>&1
built=$(now)
scripts/tools.sh temporal tofu >"$work/tools.log" 2>&1
tools=$(now)
bin/gosling validate examples/nest >/dev/null
bin/gosling dev --nest examples/nest --state-dir .gosling --api-addr "127.0.0.1:$(free)" \
  --temporal-port "$(free)" --ui-port "$(free)" --gitlab-addr "127.0.0.1:$(free)" >"$work/dev.log" 2>&1 &
dev=$!
until grep -q "Try it, in another terminal" "$work/dev.log"; do
  kill -0 "$dev" 2>/dev/null || { cat "$work/dev.log"; exit 1; }
  sleep 0.2
done
banner=$(now)
bin/gosling dev simulate job --egg web-app >"$work/simulate1.log"
simulated=$(now)
bin/gosling dev simulate job --egg web-app >"$work/simulate2.log"
again=$(now)
kill -INT "$dev"
wait "$dev" || true

echo "build gosling:             $(since "$start" "$built") s (clone included)"
echo "Temporal CLI and OpenTofu: $(since "$built" "$tools") s"
echo "clone to make run banner:  $(since "$start" "$banner") s"
echo "first dev simulate job:    $(since "$banner" "$simulated") s"
echo "second dev simulate job:   $(since "$simulated" "$again") s"
