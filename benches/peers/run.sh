#!/usr/bin/env bash
# Runs FAISS, ScaNN and hnswlib on a dataset file and writes JSON shaped like `shoal bench --json`.
# Installs its own virtualenv (SHOAL_PEERS_VENV, default benches/peers/.venv) on first use.
#   benches/peers/run.sh --dataset PATH --k 10 --out-dir bench-out [--engines faiss-ivfpq,faiss-fastscan,faiss-rabitq,scann,hnswlib]
# With `qdrant-edge` first, runs Qdrant's engine in process as a whole database instead
# (qdrant_edge_peer.py; the peer of `shoal bench --engine shard`):
#   benches/peers/run.sh qdrant-edge --dataset PATH [--filters 0.001,0.01,0.1,0.5] --out out/qe.json
# With `compare` first, prints reports side by side (compare.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${SHOAL_PEERS_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.requirements.txt"
fi
case "${1:-}" in
  qdrant-edge) shift; exec "$venv/bin/python" "$here/qdrant_edge_peer.py" "$@" ;;
  compare) shift; exec "$venv/bin/python" "$here/compare.py" "$@" ;;
  *) exec "$venv/bin/python" "$here/peers.py" "$@" ;;
esac
