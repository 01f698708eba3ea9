"""Qdrant's engine as a whole-database peer of `shoal bench --engine shard`.

`qdrant-edge-py` (PyPI; module `qdrant_edge`) is Qdrant's shard in process: segments, HNSW, payload
indexes and the optimizer, without a server. This script uses it the way `shoal bench --engine shard`
uses shoal's shard engine, so that the two databases are compared without HTTP, in the same run:

- a shard created with only the vector size and distance (every other setting Qdrant's default),
  its search pool limited to one thread (`max_search_threads=1`) and queried from one thread;
- with `--filters`, one integer payload index per filtered field, created before the load as
  Qdrant's documentation advises (`--no-payload-index` leaves them out);
- the base upserted in batches (ids = row numbers, payload fields as `shoal bench` writes them),
  then `optimize()`, which blocks until the optimizer has nothing left to do (HNSW built);
- every query once through `EdgeShard.query` without params (request objects built beforehand, so
  only the engine is timed), unfiltered and then under each filter, after a 64-query warm-up.

Payloads, filters and the exact filtered ground truth follow `src/bench/filters.rs`: for a
selectivity of 1/N every point gets the field `sel_N` = bucket(row, N) and query q filters on
`sel_N == q % N`. `bucket` below must give the same values as the Rust one; `check_bucket_contract`
stops the run if it does not.

Writes one JSON report shaped like `shoal bench --json` (`engine` = `qdrant-edge`, a `selectivity`
on filtered rows), so that `benches/peers/compare.py` puts it in one table with shoal.

    benches/peers/run-qdrant-edge.sh --dataset PATH --filters 0.001,0.01,0.1,0.5 --out out/qe.json
"""
import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import load  # noqa: E402  (same dataset reader as the FAISS/hnswlib peers)


# ---------------------------------------------------------------- payloads (src/bench/filters.rs)

def splitmix64(x):
    """SplitMix64's output function on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def bucket(rows, buckets):
    """bucket(row, N) = splitmix64(row ^ (N << 32)) % N, for an array of rows."""
    rows = np.asarray(rows, dtype=np.uint64)
    n = np.uint64(buckets)
    return (splitmix64(rows ^ (n << np.uint64(32))) % n).astype(np.int64)


def check_bucket_contract():
    """The values pinned in src/bench/tests.rs (`buckets_are_the_pinned_cross_language_values`)."""
    pinned = [(0, 1000, 67), (1, 1000, 957), (12345, 1000, 838), (7, 100, 2), (99, 10, 9),
              (123456789, 1000, 426)]
    for row, n, want in pinned:
        got = int(bucket([row], n)[0])
        if got != want:
            sys.exit(f"bucket({row}, {n}) = {got}, shoal has {want}: payloads would differ")


def buckets_for(fraction):
    if not 0.0 < fraction <= 1.0:
        sys.exit(f"filter selectivity {fraction} must be in (0, 1]")
    return max(1, int(round(1.0 / fraction)))


# ---------------------------------------------------------------- exact ground truth

def exact_knn(base, queries, metric, k):
    """Row numbers of the k nearest base rows per query (rows already unit-norm for cosine);
    fewer than k rows: padded with -1."""
    k_eff = min(k, len(base))
    out = np.full((len(queries), k), -1, dtype=np.int64)
    if k_eff == 0 or len(queries) == 0:
        return out
    bnorm = (base * base).sum(1) if metric == "l2" else None
    for s in range(0, len(queries), 256):
        q = queries[s:s + 256]
        dots = q @ base.T
        d = bnorm[None, :] - 2.0 * dots if metric == "l2" else -dots
        top = np.argpartition(d, k_eff - 1, axis=1)[:, :k_eff] if k_eff < len(base) else \
            np.tile(np.arange(len(base)), (len(q), 1))
        order = np.argsort(np.take_along_axis(d, top, 1), axis=1, kind="stable")
        out[s:s + len(q), :k_eff] = np.take_along_axis(top, order, 1)
    return out


def filtered_groundtruth(base, queries, metric, k, buckets, row_buckets):
    """Per query q: the k nearest rows among those whose bucket is q % buckets."""
    gt = np.full((len(queries), k), -1, dtype=np.int64)
    asked = np.arange(len(queries)) % buckets
    for value in np.unique(asked):
        rows = np.nonzero(row_buckets == value)[0]
        qs = np.nonzero(asked == value)[0]
        if len(rows) == 0:
            continue
        local = exact_knn(base[rows], queries[qs], metric, k)
        gt[qs] = np.where(local >= 0, rows[np.maximum(local, 0)], -1)
    return gt, float(np.mean([np.count_nonzero(row_buckets == v) for v in asked]) / len(base))


# ---------------------------------------------------------------- measurement

def measure(shard, requests, gt, k):
    """Runs every request once, one per call; recall counts only real neighbours (not -1)."""
    for r in requests[:64]:
        shard.query(r)
    lat = np.empty(len(requests))
    found = expected = 0
    start = time.perf_counter()
    for i, r in enumerate(requests):
        t = time.perf_counter()
        hits = shard.query(r)
        lat[i] = time.perf_counter() - t
        truth = set(int(x) for x in gt[i, :k] if x >= 0)
        found += len(set(int(p.id) for p in hits[:k]) & truth)
        expected += len(truth)
    wall = time.perf_counter() - start
    return {
        "nprobe": 0, "rerank": 0,
        "recall": found / expected if expected else 1.0,
        "qps": len(requests) / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p95_ms": float(np.percentile(lat, 95) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--metric", choices=["l2", "cosine", "dot"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--max-base", type=int, default=0, help="index only the first N base vectors")
    p.add_argument("--max-queries", type=int, default=0)
    p.add_argument("--filters", default="", help="selectivities, e.g. 0.001,0.01,0.1,0.5")
    p.add_argument("--no-payload-index", action="store_true", help="filter without payload indexes")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--search-threads", type=int, default=1, help="EdgeConfig.max_search_threads")
    p.add_argument("--label")
    p.add_argument("--out", required=True, help="JSON report path")
    args = p.parse_args()
    check_bucket_contract()

    import qdrant_edge as qe

    name, metric, base, queries, gt = load(args.dataset, args.metric)
    path = args.dataset.rstrip("/")
    name = os.path.basename(path) if os.path.isdir(path) else os.path.basename(path).split(".")[0]
    if args.max_base and args.max_base < len(base):
        base, gt = np.ascontiguousarray(base[:args.max_base]), None
    if args.max_queries:
        queries = queries[:args.max_queries]
        gt = gt[:args.max_queries] if gt is not None else None
    if gt is None or gt.shape[1] < args.k:
        print(f"computing exact ground truth ({len(queries)} queries x {len(base)} base vectors)", flush=True)
        gt = exact_knn(base, queries, metric, args.k)
    fractions = [float(x) for x in args.filters.split(",") if x]
    filters = []
    for f in fractions:
        n_buckets = buckets_for(f)
        row_buckets = bucket(np.arange(len(base)), n_buckets)
        fgt, matching = filtered_groundtruth(base, queries, metric, args.k, n_buckets, row_buckets)
        print(f"filter sel_{n_buckets}: {matching * 100:.4f}% of the points pass on average "
              f"(stated {100.0 / n_buckets:.4f}%)", flush=True)
        filters.append((n_buckets, row_buckets, fgt))

    distance = {"cosine": qe.Distance.Cosine, "l2": qe.Distance.Euclid, "dot": qe.Distance.Dot}[metric]
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=base.shape[1], distance=distance),
                           max_search_threads=args.search_threads)
    workdir = tempfile.mkdtemp(prefix="qdrant-edge-peer-")
    try:
        shard = qe.EdgeShard.create(os.path.join(workdir, "shard"), config)
        if not args.no_payload_index:
            for n_buckets, _, _ in filters:
                shard.update(qe.UpdateOperation.create_field_index(f"sel_{n_buckets}", qe.PayloadSchemaType.Integer))
        start = time.perf_counter()
        for s in range(0, len(base), args.batch_size):
            e = min(s + args.batch_size, len(base))
            points = [
                qe.Point(i, base[i].tolist(), {f"sel_{nb}": int(rb[i]) for nb, rb, _ in filters})
                for i in range(s, e)
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
        ingest = time.perf_counter() - start
        t = time.perf_counter()
        shard.optimize()
        waited = time.perf_counter() - t
        build_seconds = time.perf_counter() - start
        info = shard.info()
        print(f"loaded {len(base)} points in {ingest:.2f}s; optimized in {waited:.2f}s: "
              f"{info.segments_count} segments, {info.indexed_vectors_count} vectors indexed", flush=True)

        def request(i, flt):
            return qe.QueryRequest(limit=args.k, query=qe.Query.Nearest(queries[i].tolist()), filter=flt)

        results = []
        row = measure(shard, [request(i, None) for i in range(len(queries))], gt, args.k)
        results.append(row)
        print(f"qdrant-edge unfiltered recall={row['recall']:.4f} qps={row['qps']:.1f}", flush=True)
        for n_buckets, _, fgt in filters:
            requests = [
                request(i, qe.Filter(must=[qe.FieldCondition(
                    key=f"sel_{n_buckets}", match=qe.MatchValue(int(i % n_buckets)))]))
                for i in range(len(queries))
            ]
            row = measure(shard, requests, fgt, args.k)
            row["selectivity"] = 1.0 / n_buckets
            results.append(row)
            print(f"qdrant-edge filter 1/{n_buckets} recall={row['recall']:.4f} qps={row['qps']:.1f} "
                  f"({row['qps'] / results[0]['qps']:.2f}x unfiltered)", flush=True)
        shard.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report = {
        "engine": "qdrant-edge", "label": args.label, "dataset": name, "n": len(base),
        "dim": int(base.shape[1]), "metric": metric, "k": args.k, "threads": 1,
        "build_seconds": build_seconds, "index_bytes": None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "ingest_vectors_per_second": len(base) / ingest if ingest > 0 else None,
        "segments": info.segments_count, "indexed_points": info.indexed_vectors_count,
        # optimize() returns once every point is indexed and the optimizer is done: both waits.
        "index_wait_seconds": waited, "idle_wait_seconds": waited, "payload_indexes": bool(filters) and not args.no_payload_index,
        "qdrant_edge_version": qe_version(), "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}", flush=True)


def qe_version():
    try:
        from importlib.metadata import version
        return version("qdrant-edge-py")
    except Exception:  # noqa: BLE001 - the version is informative only
        return None


if __name__ == "__main__":
    main()
