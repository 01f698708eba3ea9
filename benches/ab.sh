#!/usr/bin/env bash
# Before/after of one `shoal bench` between two builds: the same arguments run with binary A,
# then binary B, ROUNDS times alternated (a shared machine drifts between runs), and the median
# QPS, p50 and recall of each printed per result row, with B's QPS as a ratio of A's.
#
#   benches/ab.sh A_BINARY B_BINARY ROUNDS -- BENCH_ARGS...
#   benches/ab.sh /work/old/target/release/shoal target/release/shoal 3 -- \
#       --dataset ../shared/datasets/debian-minilm-384-cos.f16.npz --nlist 256 --pq-m 192 \
#       --pq-bits 4 --nprobe 32 --rerank 4
set -euo pipefail
a=$1 b=$2 rounds=$3
shift 3
[ "${1:-}" = "--" ] && shift
# AB_OUT=DIR keeps each run's JSON report and log there.
out=${AB_OUT:-$(mktemp -d)}
mkdir -p "$out"
[ -z "${AB_OUT:-}" ] && trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$rounds"); do
  for side in a b; do
    bin=$a; [ "$side" = b ] && bin=$b
    "$bin" bench "$@" --json "$out/$side-$i.json" >"$out/$side-$i.log" 2>&1 || {
      echo "run $side-$i failed:" >&2; tail -20 "$out/$side-$i.log" >&2; exit 1; }
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(side):
    return [json.load(open(f"{out}/{side}-{i}.json"))["results"] for i in range(1, rounds + 1)]
A, B = rows("a"), rows("b")
runs = lambda rs: ", ".join(f"{r['qps']:,.0f}" for r in rs)
for j in range(len(A[0])):
    ra, rb = [r[j] for r in A], [r[j] for r in B]
    key = f"nprobe {ra[0]['nprobe']} rerank {ra[0]['rerank']}"
    if ra[0].get("selectivity") is not None:
        key += f" filter {ra[0]['selectivity']}"
    med = lambda rs, f: statistics.median(r[f] for r in rs)
    qa, qb = med(ra, "qps"), med(rb, "qps")
    print(f"{key}: A recall {med(ra, 'recall'):.4f} QPS {qa:,.0f} p50 {med(ra, 'p50_ms'):.3f} ms | "
          f"B recall {med(rb, 'recall'):.4f} QPS {qb:,.0f} p50 {med(rb, 'p50_ms'):.3f} ms | "
          f"B/A QPS {qb / qa:.3f}  (A runs: {runs(ra)}; B runs: {runs(rb)})")
PY
