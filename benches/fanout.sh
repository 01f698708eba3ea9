#!/usr/bin/env bash
# Fan-out overhead: p50 latency of one client against a 4-shard collection vs a 1-shard one
# holding the same points, with the same PQ codes scanned per query (4 x nlist 256, nprobe 4 vs
# nlist 1024, nprobe 16). The two are measured alternately ROUNDS times against a running
# server, and the medians compared, because a shared machine drifts between runs.
#
#   benches/fanout.sh SHOAL_BINARY DATASET URL [ROUNDS]
#   benches/fanout.sh target/release/shoal data/sl1m http://127.0.0.1:6333 5
set -euo pipefail
shoal=$1 dataset=$2 url=$3 rounds=${4:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--dataset "$dataset" --server "$url" --concurrency 1 --ingest-concurrency 4
        --pq-m 64 --pq-bits 4 --rerank 4 --max-queries 10000)
for i in $(seq 1 "$rounds"); do
  "$shoal" bench "${common[@]}" --nlist 1024 --nprobe 16 --json "$out/one-$i.json" >/dev/null 2>&1
  "$shoal" bench "${common[@]}" --shards 4 --nlist 256 --nprobe 4 --json "$out/four-$i.json" >/dev/null 2>&1
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def runs(kind):
    return [json.load(open(f"{out}/{kind}-{i}.json"))["results"][0] for i in range(1, rounds + 1)]
one, four = runs("one"), runs("four")
for name, rs in (("1 shard ", one), ("4 shards", four)):
    p50s = [r["p50_ms"] for r in rs]
    print(f"{name}: recall {statistics.median(r['recall'] for r in rs):.4f}  p50 median "
          f"{statistics.median(p50s):.3f} ms  (runs: {', '.join(f'{p:.3f}' for p in p50s)})")
a = statistics.median(r["p50_ms"] for r in one)
b = statistics.median(r["p50_ms"] for r in four)
print(f"fan-out p50 overhead: {100 * (b / a - 1):+.1f}%")
PY
