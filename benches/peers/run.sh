#!/usr/bin/env bash
# Runs FAISS and hnswlib on a dataset file and writes JSON shaped like `shoal bench --json`.
# Installs its own virtualenv (SHOAL_PEERS_VENV, default benches/peers/.venv) on first use.
#   benches/peers/run.sh --dataset PATH --k 10 --out-dir bench-out [--engines faiss-ivfpq,faiss-fastscan,hnswlib]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${SHOAL_PEERS_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.requirements.txt"
fi
exec "$venv/bin/python" "$here/peers.py" "$@"
