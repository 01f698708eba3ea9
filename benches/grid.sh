#!/usr/bin/env bash
# shoal and its index peers swept over one grid, runs alternated, medians per engine.
#
#   benches/grid.sh SHOAL_BINARY DATASET ROUNDS OUT_DIR
#
# Each round runs `shoal bench` (in process, one query thread) and then every peer engine of
# benches/peers/peers.py on the same dataset, nlist, nprobe and rerank values, so a machine that
# drifts during the run drifts for every engine alike. At the end it prints, per engine, the
# median recall@k and QPS of every setting over the rounds, the IVF-Flat recall of each nprobe
# (how hard the data is for IVF), and for each recall target the best median QPS that reaches it,
# as a ratio to FAISS fast-scan's. Settings come from the environment:
#
#   NLIST=4096 PQ_M=64 NPROBE=16,32,64,128 RERANK=4,8,16 K=10 MAX_QUERIES=2000
#   ENGINES=faiss-fastscan,faiss-rabitq,scann  SHOAL_ARGS="--sq8"  TARGETS=0.95,0.99
#   PEER_ARGS="--scann-soar 1.5 --hnsw-m 16"   (extra arguments of benches/peers/peers.py)
#
# PQ_M is shoal's 4-bit sub-quantiser count and FAISS fast-scan's (--fastscan-pq-m).
set -euo pipefail
shoal=$1 dataset=$2 rounds=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
nlist=${NLIST:-1024} pq_m=${PQ_M:-64} nprobe=${NPROBE:-16,32,64} rerank=${RERANK:-4,8}
k=${K:-10} max_queries=${MAX_QUERIES:-2000}
engines=${ENGINES:-faiss-fastscan,faiss-rabitq,scann}
targets=${TARGETS:-0.95,0.99}
mkdir -p "$out"
for i in $(seq 1 "$rounds"); do
  # shellcheck disable=SC2086
  "$shoal" bench --dataset "$dataset" --nlist "$nlist" --pq-m "$pq_m" --pq-bits 4 \
    --nprobe "$nprobe" --rerank "$rerank" --k "$k" --max-queries "$max_queries" \
    ${SHOAL_ARGS:-} --json "$out/shoal-$i.json" >"$out/shoal-$i.log" 2>&1 || {
    echo "shoal round $i failed:" >&2; tail -20 "$out/shoal-$i.log" >&2; exit 1; }
  for engine in ${engines//,/ }; do
    mkdir -p "$out/$engine-$i"
    # shellcheck disable=SC2086
    "$here/peers/run.sh" --dataset "$dataset" --nlist "$nlist" --fastscan-pq-m "$pq_m" \
      --nprobe "$nprobe" --rerank "$rerank" --k "$k" --max-queries "$max_queries" \
      --engines "$engine" --out-dir "$out/$engine-$i" ${PEER_ARGS:-} >"$out/$engine-$i.log" 2>&1 || {
      echo "$engine round $i failed:" >&2; tail -20 "$out/$engine-$i.log" >&2; exit 1; }
  done
  echo "round $i done" >&2
done
python3 - "$out" "$rounds" "$engines" "$targets" <<'PY'
import glob, json, statistics, sys
out, rounds, engines, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
def load(engine, i):
    if engine == "shoal":
        return json.load(open(f"{out}/shoal-{i}.json"))
    return json.load(open(glob.glob(f"{out}/{engine}-{i}/*.json")[0]))
table = {}
for engine in ["shoal"] + engines:
    reports = [load(engine, i) for i in range(1, rounds + 1)]
    rows = {}
    for report in reports:
        for r in report["results"]:
            rows.setdefault((r["nprobe"], r["rerank"]), []).append(r)
    table[engine] = {
        key: {
            "recall": statistics.median(r["recall"] for r in rs),
            "qps": statistics.median(r["qps"] for r in rs),
            "ivf_flat": rs[0].get("ivf_flat_recall"),
        }
        for key, rs in rows.items()
    }
    builds = [rep.get("build_seconds") for rep in reports]
    if builds[0] is None:
        builds = [rep["results"][0].get("build_seconds") for rep in reports]
    table[engine]["build"] = statistics.median(b for b in builds if b is not None)
print(f"medians of {rounds} alternated rounds")
print(f"{'engine':15s} {'nprobe':>6s} {'rerank':>6s} {'recall':>7s} {'qps':>9s} {'ivf_flat':>8s}")
for engine, rows in table.items():
    for (p, r), m in sorted((k, v) for k, v in rows.items() if k != "build"):
        flat = "-" if m["ivf_flat"] is None else f"{m['ivf_flat']:.4f}"
        print(f"{engine:15s} {p:6d} {r:6d} {m['recall']:7.4f} {m['qps']:9.1f} {flat:>8s}")
    print(f"{engine:15s} build {rows['build']:.1f} s")
for target in map(float, targets.split(",")):
    best = {}
    for engine, rows in table.items():
        ok = [m["qps"] for k, m in rows.items() if k != "build" and m["recall"] >= target]
        best[engine] = max(ok) if ok else None
    ref = best.get("faiss-fastscan")
    line = ", ".join(
        f"{e} {'unreached' if q is None else f'{q:.0f}'}"
        + ("" if q is None or not ref else f" ({q / ref:.2f}x)")
        for e, q in best.items())
    print(f"best QPS at recall >= {target}: {line}")
PY
