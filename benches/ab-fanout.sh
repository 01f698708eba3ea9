#!/usr/bin/env bash
# Before/after of the REST fan-out measurement (what benches/fanout.sh measures) between two
# builds: each round starts binary A's server on a fresh data directory, measures the 1-shard and
# the 4-shard collection against it with A as the client, stops it, then does the same with B;
# medians of p50 over ROUNDS rounds.
#
#   benches/ab-fanout.sh A_BINARY B_BINARY DATASET [ROUNDS] [PORT]
#   benches/ab-fanout.sh /work/old/target/release/shoal target/release/shoal data/sl200k 3
set -euo pipefail
a=$1 b=$2 dataset=$3 rounds=${4:-3} port=${5:-6391}
url="http://127.0.0.1:$port"
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
common=(--dataset "$dataset" --server "$url" --concurrency 1 --ingest-concurrency 4
        --pq-m 64 --pq-bits 4 --rerank 4 --max-queries 10000)
bench() { # side round kind args...
  local bin=$1 log="$out/$2-$3-$4.log"; shift 4
  "$bin" bench "${common[@]}" "$@" --json "${log%.log}.json" >"$log" 2>&1 || {
    echo "bench failed ($log):" >&2; tail -20 "$log" >&2; exit 1; }
}
for i in $(seq 1 "$rounds"); do
  for side in a b; do
    bin=$a; [ "$side" = b ] && bin=$b
    if curl -sf "$url/" >/dev/null 2>&1; then
      echo "something already answers on port $port: stop it or pass another PORT" >&2; exit 1
    fi
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$out/data" >"$out/server-$side-$i.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      curl -sf "$url/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    bench "$bin" "$side" "$i" one --nlist 1024 --nprobe 16
    bench "$bin" "$side" "$i" four --shards 4 --nlist 256 --nprobe 4
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    rm -rf "$out/data"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def runs(side, kind):
    return [json.load(open(f"{out}/{side}-{i}-{kind}.json"))["results"][0] for i in range(1, rounds + 1)]
for side in ("a", "b"):
    one, four = runs(side, "one"), runs(side, "four")
    m1 = statistics.median(r["p50_ms"] for r in one)
    m4 = statistics.median(r["p50_ms"] for r in four)
    fmt = lambda rs: ", ".join(f"{r['p50_ms']:.3f}" for r in rs)
    print(f"{side.upper()}: 1 shard recall {statistics.median(r['recall'] for r in one):.4f} "
          f"p50 {m1:.3f} ms ({fmt(one)}); 4 shards recall "
          f"{statistics.median(r['recall'] for r in four):.4f} p50 {m4:.3f} ms ({fmt(four)}); "
          f"fan-out overhead {100 * (m4 / m1 - 1):+.1f}%")
PY
