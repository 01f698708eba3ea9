#!/usr/bin/env bash
# REST A/B of two server builds: each round starts OLD then NEW on a fresh data directory,
# loads and queries it with one bench client (`shoal bench --server --defaults`), stops it.
#
#   benches/ab-rest.sh OLD NEW CLIENT ROUNDS OUT -- BENCH_ARGS...
#   benches/ab-rest.sh /work/bin/shoal-old target/release/shoal target/release/shoal 3 out/ab \
#       -- --dataset ../shared/datasets/debian-minilm-384-cos.f16.npz
#
# CLIENT runs the bench for both sides (keep it one build), OUT keeps every report and log;
# the medians of each result row are printed per side.
set -euo pipefail
old=$1 new=$2 client=$3 rounds=$4 out=$5
shift 5; [ "${1:-}" = "--" ] && shift
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" serve --listen 127.0.0.1:$port --data-dir "$dir" >"$out/server-$side-$r.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    "$client" bench --server "http://127.0.0.1:$port" --defaults "$@" --json "$out/$side-$r.json" >"$out/$side-$r.log" 2>&1 || {
      echo "run $side-$r failed" >&2; tail -5 "$out/$side-$r.log" >&2; }
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for side in ("old", "new"):
    reports = [json.load(open(f"{out}/{side}-{i}.json")) for i in range(1, rounds + 1)]
    waits = [(r.get("index_wait_seconds"), r.get("idle_wait_seconds")) for r in reports]
    print(side, "seconds after the last write until every point indexed / idle:",
          [(round(a or 0, 1), round(b or 0, 1)) for a, b in waits])
    rows = [r["results"] for r in reports]
    for j, row in enumerate(rows[0]):
        q = [r[j]["qps"] for r in rows]
        rec = [r[j].get("recall", float("nan")) for r in rows]
        print(side, row.get("label", j), "QPS", [round(x) for x in q], "median", round(statistics.median(q)), "recall", [round(x, 3) for x in rec])
PY
