#!/usr/bin/env bash
# CPU per one-query REST request, split between the server and a cheap load generator (wrk),
# against a collection already loaded on a running server (e.g. `shoal bench --server URL
# --collection NAME --keep ...`). Prints requests/s, the server's CPU per request (from its
# `process_cpu_seconds_total`) and wrk's (from /proc), for each nprobe. With the in-process CPU
# per search S (2 cores / in-process QPS) and wrk's C, S / (S + C) bounds REST / in-process QPS
# on a machine the client shares with the server.
#
#   benches/rest-cost.sh DATASET_DIR URL COLLECTION [NPROBE...]
#   benches/rest-cost.sh data/sl1m http://127.0.0.1:6333 b1m 4 16 32
# Needs wrk (Debian: apt-get install wrk) and a dataset folder with query.fvecs.
set -euo pipefail
dataset=$1 url=$2 collection=$3
shift 3
nprobes=("${@:-16}")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu() { curl -s "$url/metrics" | awk '/^process_cpu_seconds_total/ {print $2}'; }
for p in "${nprobes[@]}"; do
  python3 - "$dataset/query.fvecs" "$collection" "$p" >"$out/q.lua" <<'PY'
import json, struct, sys
path, collection, nprobe = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = open(path, "rb").read()
dim = struct.unpack("<i", raw[:4])[0]
rec = 4 + 4 * dim
print("bodies = {")
for i in range(min(2000, len(raw) // rec)):
    v = struct.unpack(f"<{dim}f", raw[i * rec + 4:(i + 1) * rec])
    body = {"query": [round(x, 4) for x in v], "limit": 10, "params": {"nprobe": nprobe, "rerank": 4}}
    print(f"[==[{json.dumps(body)}]==],")
print("}\ni = 0\nrequest = function()\n  i = i % #bodies + 1")
print(f'  return wrk.format("POST", "/collections/{collection}/points/query", {{["Content-Type"] = "application/json"}}, bodies[i])')
print("end")
PY
  wrk -t2 -c8 -d2s -s "$out/q.lua" "$url" >/dev/null # warm-up
  before=$(cpu)
  wrk -t2 -c8 -d6s -s "$out/q.lua" "$url" >"$out/wrk.txt" &
  wrk_pid=$!
  sleep 0.3
  wrk_ticks=0
  while kill -0 "$wrk_pid" 2>/dev/null; do
    t=$(awk '{print $14 + $15}' "/proc/$wrk_pid/stat" 2>/dev/null || true)
    [ -n "$t" ] && wrk_ticks=$t
    sleep 0.2
  done
  wait "$wrk_pid"
  after=$(cpu)
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out/wrk.txt")
  python3 -c "
rps, ticks, hz = $rps, $wrk_ticks, $(getconf CLK_TCK)
n = rps * 6
print(f'nprobe $p: {rps:,.0f} requests/s, server {($after - $before) * 1e6 / n:.0f} µs/request, '
      f'wrk {ticks / hz * 1e6 / n:.0f} µs/request')"
done
