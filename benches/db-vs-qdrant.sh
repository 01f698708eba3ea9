#!/usr/bin/env bash
# Shoal's shard engine against Qdrant's engine, both in process as whole databases, one query
# thread each, on the same data: `shoal bench --engine shard` and benches/peers/run.sh qdrant-edge
# run alternately RUNS times (so that a busy spell of the machine hits both), unfiltered and under
# each FILTERS selectivity; then a table of medians with the QPS ratios (benches/peers/compare.py).
#
#   benches/db-vs-qdrant.sh DATASET [OUT_DIR]
#
# Environment:
#   RUNS=3                         runs of each engine
#   FILTERS=0.001,0.01,0.1,0.5     filter selectivities ("" = unfiltered only)
#   MAX_BASE= MAX_QUERIES=         use only the first rows of the base / queries
#   SHOAL=target/release/shoal     the shoal binary (built with `cargo build --release` if missing)
#   SERVER_URL=                    also measure a running shoal over REST with --defaults
#   SHOAL_ARGS=                    more flags for `shoal bench --engine shard` (e.g. --settle 20)
#   QDRANT_ARGS=                   more flags for the Qdrant peer (e.g. --no-payload-index)
#   NO_PAYLOAD_INDEX=1             filter without payload indexes in every engine
#
# Examples (the MiniLM set, then 1M x 128 sift-like, generated once):
#   benches/db-vs-qdrant.sh /work/shared/datasets/debian-minilm-384-cos.f16.npz out/db-minilm
#   shoal dataset generate --kind sift-like --n 1000000 --queries 10000 --dim 128 --seed 1 --k 100 --out data/sl1m
#   MAX_QUERIES=1000 benches/db-vs-qdrant.sh data/sl1m out/db-sl1m
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dataset=${1:?usage: benches/db-vs-qdrant.sh DATASET [OUT_DIR]}
out=${2:-bench-out/db-vs-qdrant}
runs=${RUNS:-3}
filters=${FILTERS-0.001,0.01,0.1,0.5}
shoal=${SHOAL:-$here/../target/release/shoal}
if [ ! -x "$shoal" ]; then
  (cd "$here/.." && cargo build --release)
fi
mkdir -p "$out"
common=()
[ -n "${MAX_BASE:-}" ] && common+=(--max-base "$MAX_BASE")
[ -n "${MAX_QUERIES:-}" ] && common+=(--max-queries "$MAX_QUERIES")
[ -n "$filters" ] && common+=(--filters "$filters")
[ -n "${NO_PAYLOAD_INDEX:-}" ] && common+=(--no-payload-index)
reports=()
for i in $(seq 1 "$runs"); do
  echo "== run $i/$runs: shoal shard engine ($(date -u +%H:%M:%S) UTC)"
  # shellcheck disable=SC2086
  "$shoal" bench --engine shard --dataset "$dataset" "${common[@]}" --label shoal-shard \
    --json "$out/shoal-shard-$i.json" ${SHOAL_ARGS:-}
  reports+=("$out/shoal-shard-$i.json")
  echo "== run $i/$runs: qdrant-edge ($(date -u +%H:%M:%S) UTC)"
  # shellcheck disable=SC2086
  "$here/peers/run.sh" qdrant-edge --dataset "$dataset" "${common[@]}" --label qdrant-edge \
    --out "$out/qdrant-edge-$i.json" ${QDRANT_ARGS:-}
  reports+=("$out/qdrant-edge-$i.json")
  if [ -n "${SERVER_URL:-}" ]; then
    echo "== run $i/$runs: shoal over REST, defaults ($(date -u +%H:%M:%S) UTC)"
    "$shoal" bench --server "$SERVER_URL" --defaults --dataset "$dataset" "${common[@]}" \
      --label shoal-rest --collection "shoal-db-vs-qdrant-$i" --json "$out/shoal-rest-$i.json"
    reports+=("$out/shoal-rest-$i.json")
  fi
done
# Series in the order shoal-shard, qdrant-edge, shoal-rest: ratios are shoal-shard / the others.
python3 "$here/peers/compare.py" "${reports[@]}" | tee "$out/table.txt"
python3 "$here/peers/compare.py" --markdown "${reports[@]}" > "$out/table.md"
echo "wrote $out/table.txt and $out/table.md"
