"""Measure FAISS, ScaNN and hnswlib on the same dataset file as `shoal bench`, the same way: indexes built
with every core, queries run one per call on one thread, k nearest, recall@k against the exact
ground truth. Writes one JSON file per engine, shaped like `shoal bench --json` (plus `engine` and
per-row `params`), so that `shoal bench plot` can draw shoal and its peers on one chart.

Engines:
  faiss-ivfpq     IndexIVFPQ (8-bit codes, residual encoding) wrapped in IndexRefineFlat
  faiss-fastscan  index_factory "IVF{nlist},PQ{m}x4fs,RFlat" (4-bit fast-scan + exact re-rank)
  faiss-rabitq    index_factory "IVF{nlist},RaBitQfs,RFlat": IndexIVFRaBitQFastScan (1-bit RaBitQ
                  codes of the residuals, fast-scan, `--rabitq-bits` for more) + exact re-rank;
                  query bits `qb` = 8, FAISS's documented default for the fast-scan index
  scann           ScaNN: k-means tree (num_leaves = nlist; spherical for cosine; no minimum leaf
                  size), asymmetric hashing (2 dims per 4-bit block; anisotropic threshold 0.2 for
                  dot/cosine, squared L2 for l2), exact float re-order; one `search` call per
                  query with leaves_to_search = nprobe, pre_reorder_num_neighbors = k*rerank
  hnswlib         HNSW graph, M and ef_construction fixed, ef swept

The `rerank` of a row is FAISS's refine `k_factor` (shoal's `rerank` has the same meaning: the best
k * rerank approximate candidates are re-ranked exactly); for ScaNN the re-order keeps k * rerank
candidates (rerank 0 re-orders just k: the same result set as none); for hnswlib `nprobe` holds `ef`.
Cosine rows are normalised and compared by inner product in every engine.

`--query-cpu N` pins the query loops (not the builds) to CPU N, like `taskset -c N`.
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

import numpy as np


# ---------------------------------------------------------------- dataset loading

def read_vecs(path):
    """texmex .fvecs/.ivecs/.bvecs: each row is a little-endian int32 dimension then the values."""
    raw = np.fromfile(path, dtype=np.uint8)
    dim = int(raw[:4].view(np.int32)[0])
    if path.endswith(".bvecs"):
        rows = raw.reshape(-1, 4 + dim)[:, 4:]
        return rows.astype(np.float32)
    rows = raw.view(np.int32).reshape(-1, 1 + dim)[:, 1:]
    if path.endswith(".ivecs"):
        return np.ascontiguousarray(rows)
    return np.ascontiguousarray(rows.view(np.float32))


def read_bin(path):
    """big-ann .fbin/.u8bin/.ibin: uint32 n, uint32 dim, then n*dim values."""
    n, dim = np.fromfile(path, dtype=np.uint32, count=2)
    dtype = {".fbin": np.float32, ".u8bin": np.uint8, ".ibin": np.int32}[os.path.splitext(path)[1]]
    data = np.fromfile(path, dtype=dtype, offset=8, count=int(n) * int(dim)).reshape(int(n), int(dim))
    return data if dtype is np.int32 else data.astype(np.float32)


def read_any(path):
    return read_bin(path) if path.endswith(("bin",)) else read_vecs(path)


def find_part(folder, word):
    hits = sorted(
        p for p in glob.glob(os.path.join(folder, "*"))
        if word in os.path.basename(p) and p.endswith((".fvecs", ".bvecs", ".ivecs", ".fbin", ".u8bin", ".ibin"))
    )
    return hits[0] if hits else None


def load(path, metric_override):
    """Returns (name, metric, base, queries, groundtruth or None); metric in l2|cosine|dot."""
    name = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
    gt = None
    if path.endswith((".hdf5", ".h5")):
        import h5py

        with h5py.File(path, "r") as f:
            base = np.asarray(f["train"], dtype=np.float32)
            queries = np.asarray(f["test"], dtype=np.float32)
            gt = np.asarray(f["neighbors"]) if "neighbors" in f else None
            metric = {"euclidean": "l2", "angular": "cosine", "dot": "dot", "ip": "dot"}[f.attrs["distance"]]
    elif path.endswith(".npz"):
        z = np.load(path)
        base, queries, metric = z["base"].astype(np.float32), z["query"].astype(np.float32), "cosine"
    else:
        base = read_any(find_part(path, "base"))
        queries = read_any(find_part(path, "query"))
        gt_path = find_part(path, "groundtruth") or find_part(path, "gt")
        if gt_path:
            gt = read_any(gt_path) if gt_path.endswith("vecs") else read_bin_gt(gt_path)
        metric = "l2"
    if metric_override:
        metric = metric_override
    if metric == "cosine":
        base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-30)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    return name, metric, np.ascontiguousarray(base), np.ascontiguousarray(queries), gt


def read_bin_gt(path):
    """big-ann groundtruth .ibin: n, k, then n*k int32 ids, then (optionally) n*k float distances."""
    n, k = np.fromfile(path, dtype=np.uint32, count=2)
    return np.fromfile(path, dtype=np.int32, offset=8, count=int(n) * int(k)).reshape(int(n), int(k))


def exact_groundtruth(faiss, base, queries, metric, k):
    index = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _, ids = index.search(queries, k)
    return ids


# ---------------------------------------------------------------- measurement

def measure(search_one, queries, gt, k):
    """Runs every query once, one per call; returns recall@k, qps and latency percentiles."""
    hits = 0
    lat = np.empty(len(queries))
    start = time.perf_counter()
    for i in range(len(queries)):
        t = time.perf_counter()
        ids = search_one(queries[i:i + 1])
        lat[i] = time.perf_counter() - t
        hits += len(set(int(x) for x in ids[:k]) & set(int(x) for x in gt[i, :k]))
    wall = time.perf_counter() - start
    return {
        "recall": hits / (len(queries) * k),
        "qps": len(queries) / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p95_ms": float(np.percentile(lat, 95) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def faiss_metric(faiss, metric):
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def ivf_flat_recalls(quantizer, base, queries, gt, k, nprobes):
    """Recall@k an IVF with exact lists reaches on this coarse quantizer at each nprobe: the share
    of each query's true top k whose list is among the nprobe probed (shoal bench's
    `ivf_flat_recall`), so the difficulty of the data shows beside every result."""
    truth = np.asarray(gt)[:, :k]
    rows = np.unique(truth)
    list_of = dict(zip(rows.tolist(), quantizer.assign(np.ascontiguousarray(base[rows]), 1).ravel().tolist()))
    lists = np.vectorize(list_of.__getitem__)(truth)
    out = {}
    for nprobe in nprobes:
        _, probed = quantizer.search(queries, nprobe)
        out[nprobe] = float(np.mean([np.isin(lists[i], probed[i]).mean() for i in range(len(queries))]))
    return out


def sweep(label, args, queries, gt, search_for, flat_recall=None):
    """Measures every (nprobe, rerank) of the grid with nprobe <= nlist, queries pinned as asked;
    `search_for(nprobe, rerank)` sets the index up and returns its one-query search."""
    pin = pin_queries(args)
    results = []
    for nprobe in args.nprobe:
        if nprobe > args.nlist:
            continue
        for rerank in args.rerank:
            row = {"nprobe": nprobe, "rerank": rerank,
                   **measure(search_for(nprobe, rerank), queries, gt, args.k)}
            tail = ""
            if flat_recall is not None:
                row["ivf_flat_recall"] = flat_recall[nprobe]
                tail = f" ivf_flat={flat_recall[nprobe]:.4f}"
            results.append(row)
            print(f"{label:15s} nprobe={nprobe:5d} rerank={rerank:3d} recall={row['recall']:.4f} "
                  f"qps={row['qps']:9.1f} p50={row['p50_ms']:.3f}ms p99={row['p99_ms']:.3f}ms{tail}",
                  flush=True)
    unpin_queries(pin)
    return results


def run_faiss(kind, args, name, metric, base, queries, gt):
    import faiss

    dim = base.shape[1]
    faiss.omp_set_num_threads(args.build_threads)
    t = time.perf_counter()
    if kind == "faiss-ivfpq":
        quantizer = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quantizer, dim, args.nlist, args.pq_m, 8, faiss_metric(faiss, metric))
        index = faiss.IndexRefineFlat(ivf)
        pq_m, pq_bits = args.pq_m, 8
    elif kind == "faiss-rabitq":
        # FAISS 1.15.1 has the fast-scan RaBitQ index (IndexIVFRaBitQFastScan) behind "RaBitQfs";
        # "RaBitQfs{b}" gives b-bit codes per dimension (1 is RaBitQ proper).
        bits = args.rabitq_bits
        spec = f"IVF{args.nlist},RaBitQfs{bits if bits > 1 else ''},RFlat"
        index = faiss.index_factory(dim, spec, faiss_metric(faiss, metric))
        ivf = faiss.downcast_index(index.base_index)
        ivf.qb = 8  # bits per query coordinate; 8 is the header's default for the fast-scan index
        pq_m, pq_bits = dim, bits  # one "sub-quantizer" per dimension
    else:
        pq_m = args.fastscan_pq_m or dim // 2
        index = faiss.index_factory(dim, f"IVF{args.nlist},PQ{pq_m}x4fs,RFlat", faiss_metric(faiss, metric))
        ivf = faiss.downcast_index(index.base_index)
        pq_bits = 4
    index.train(base)
    index.add(base)
    build_seconds = time.perf_counter() - t
    ivf_bytes = len(faiss.serialize_index(ivf))
    flat_recall = ivf_flat_recalls(ivf.quantizer, base, queries, gt, args.k,
                                   [p for p in args.nprobe if p <= args.nlist])
    faiss.omp_set_num_threads(1)
    def search_for(nprobe, rerank):
        ivf.nprobe = nprobe
        index.k_factor = float(max(rerank, 1))
        if rerank == 0:
            return lambda q: ivf.search(q, args.k)[1][0]
        return lambda q: index.search(q, args.k)[1][0]

    results = sweep(kind, args, queries, gt, search_for, flat_recall)
    return {
        "engine": kind, "dataset": name, "n": len(base), "dim": dim, "metric": metric,
        "k": args.k, "nlist": args.nlist, "pq_m": pq_m, "pq_bits": pq_bits, "threads": 1,
        "build_threads": args.build_threads, "build_seconds": build_seconds, "index_bytes": ivf_bytes,
        "peak_rss_bytes": peak_rss_bytes(), "results": results,
    }


def run_scann(args, name, metric, base, queries, gt):
    import shutil
    import tempfile

    import scann

    dim = base.shape[1]
    measure_name = "squared_l2" if metric == "l2" else "dot_product"  # cosine: rows already normalised
    max_rerank = max(args.rerank + [1])
    # The tree trains on up to 256 points per leaf, FAISS's k-means default; the AH codebooks on
    # ScaNN's default sample (100,000), both capped at the base size.
    train_size = min(len(base), args.scann_train_size or 256 * args.nlist)
    ah_train_size = min(len(base), 100_000)
    t = time.perf_counter()
    builder = scann.scann_ops_pybind.builder(base, args.k, measure_name)
    # Spherical k-means for unit rows, as ScaNN's own ann-benchmarks configuration does for angular.
    # min_partition_size 1: ScaNN's default floor of 50 points per leaf reshapes the partition when
    # n / nlist is near 50 (MiniLM 58k / 1024 lost ~0.1 recall@10 at nprobe 16); FAISS has no floor.
    # --scann-soar: ScaNN's own spilling (SOAR), the technique shoal's --soar follows; ScaNN offers it
    # for dot-product scoring only (cosine here, on normalised rows).
    soar = {}
    if args.scann_soar is not None:
        if measure_name != "dot_product":
            sys.exit("--scann-soar: ScaNN spills only under dot-product scoring (cosine or dot sets)")
        soar = {"soar_lambda": args.scann_soar}
    builder = builder.tree(num_leaves=args.nlist, num_leaves_to_search=min(args.nprobe[0], args.nlist),
                           training_sample_size=train_size, spherical=metric == "cosine", min_partition_size=1,
                           **soar)
    if metric == "l2":
        builder = builder.score_ah(2, training_sample_size=ah_train_size)
    else:
        builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2, training_sample_size=ah_train_size)
    builder = builder.reorder(args.k * max_rerank)
    searcher = builder.set_n_training_threads(args.build_threads).build()
    build_seconds = time.perf_counter() - t
    # Index size without the float vectors kept for the re-order (FAISS's is counted without them too).
    tmp = tempfile.mkdtemp(prefix="scann-")
    try:
        searcher.serialize(tmp)
        index_bytes = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp) if f != "dataset.npy")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    def search_for(nprobe, rerank):
        pre = args.k * max(rerank, 1)
        # `search` answers one query on the calling thread (search_batched is not used).
        return lambda q: searcher.search(q[0], final_num_neighbors=args.k, pre_reorder_num_neighbors=pre,
                                         leaves_to_search=nprobe)[0]

    results = sweep("scann", args, queries, gt, search_for)
    return {
        "engine": "scann", "dataset": name, "n": len(base), "dim": dim, "metric": metric,
        "k": args.k, "nlist": args.nlist, "pq_m": dim // 2, "pq_bits": 4, "threads": 1,
        "build_threads": args.build_threads, "build_seconds": build_seconds, "index_bytes": index_bytes,
        "scann_training_sample_size": train_size, "scann_ah_training_sample_size": ah_train_size,
        "scann_version": scann_version(), "scann_soar_lambda": args.scann_soar,
        "peak_rss_bytes": peak_rss_bytes(), "results": results,
    }


def scann_version():
    try:
        from importlib.metadata import version

        return version("scann")
    except Exception:
        return None


def pin_queries(args):
    """With --query-cpu, moves this thread to that CPU for the query loop; returns the old mask."""
    if args.query_cpu is None:
        return None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {args.query_cpu})
    return old


def unpin_queries(old):
    if old is not None:
        os.sched_setaffinity(0, old)


def run_hnswlib(args, name, metric, base, queries, gt):
    import hnswlib

    space = {"l2": "l2", "cosine": "ip", "dot": "ip"}[metric]  # cosine: rows already normalised
    index = hnswlib.Index(space=space, dim=base.shape[1])
    t = time.perf_counter()
    index.init_index(max_elements=len(base), M=args.hnsw_m, ef_construction=args.hnsw_ef_construction, random_seed=1)
    index.set_num_threads(args.build_threads)
    index.add_items(base, np.arange(len(base)))
    build_seconds = time.perf_counter() - t
    index.set_num_threads(1)
    pin = pin_queries(args)
    results = []
    for ef in args.hnsw_ef:
        index.set_ef(max(ef, args.k))

        def search_one(q):
            return index.knn_query(q, k=args.k)[0][0]

        row = {"nprobe": ef, "rerank": 0, "ef": ef, **measure(search_one, queries, gt, args.k)}
        results.append(row)
        print(f"hnswlib         ef={ef:5d} recall={row['recall']:.4f} qps={row['qps']:9.1f} "
              f"p50={row['p50_ms']:.3f}ms p99={row['p99_ms']:.3f}ms", flush=True)
    unpin_queries(pin)
    return {
        "engine": "hnswlib", "dataset": name, "n": len(base), "dim": base.shape[1], "metric": metric,
        "k": args.k, "threads": 1, "build_threads": args.build_threads, "build_seconds": build_seconds,
        "index_bytes": None, "hnsw_m": args.hnsw_m, "peak_rss_bytes": peak_rss_bytes(), "results": results,
    }


ENGINES = ["faiss-ivfpq", "faiss-fastscan", "faiss-rabitq", "scann", "hnswlib"]


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--metric", choices=["l2", "cosine", "dot"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated, of: " + ", ".join(ENGINES))
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--pq-m", type=int, default=32, help="sub-quantizers of the 8-bit IndexIVFPQ")
    p.add_argument("--fastscan-pq-m", type=int, default=0, help="sub-quantizers of the 4-bit fast-scan (default dim/2)")
    p.add_argument("--nprobe", type=int_list, default=[1, 4, 16, 64, 128])
    p.add_argument("--rerank", type=int_list, default=[0, 4, 10])
    p.add_argument("--rabitq-bits", type=int, default=1, help="bits per dimension of faiss-rabitq's codes")
    p.add_argument("--scann-train-size", type=int, default=0,
                   help="ScaNN tree training sample (default 256 * nlist, capped at the base size)")
    p.add_argument("--scann-soar", type=float, metavar="LAMBDA",
                   help="build ScaNN's tree with SOAR spilling at this lambda (dot-product sets only)")
    p.add_argument("--query-cpu", type=int, help="pin the query loops to this CPU (builds use every core)")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--hnsw-ef-construction", type=int, default=200)
    p.add_argument("--hnsw-ef", type=int_list, default=[16, 32, 64, 128, 256])
    p.add_argument("--build-threads", type=int, default=os.cpu_count())
    p.add_argument("--max-queries", type=int, default=0)
    p.add_argument("--out-dir", default="bench-out")
    args = p.parse_args()
    unknown = [e for e in args.engines.split(",") if e not in ENGINES]
    if unknown:
        p.error(f"unknown engine(s) {unknown}; choose from {ENGINES}")

    name, metric, base, queries, gt = load(args.dataset, args.metric)
    if args.max_queries:
        queries = queries[:args.max_queries]
        gt = gt[:args.max_queries] if gt is not None else None
    if gt is None or gt.shape[1] < args.k:
        import faiss

        faiss.omp_set_num_threads(args.build_threads)
        gt = exact_groundtruth(faiss, base, queries, metric, args.k)
    print(f"{name}: {len(base)} base, {len(queries)} queries, dim {base.shape[1]}, metric {metric}", flush=True)
    os.makedirs(args.out_dir, exist_ok=True)
    for engine in args.engines.split(","):
        if engine in ("faiss-ivfpq", "faiss-fastscan", "faiss-rabitq"):
            report = run_faiss(engine, args, name, metric, base, queries, gt)
        elif engine == "scann":
            report = run_scann(args, name, metric, base, queries, gt)
        elif engine == "hnswlib":
            report = run_hnswlib(args, name, metric, base, queries, gt)
        else:
            sys.exit(f"unknown engine {engine}")
        out = os.path.join(args.out_dir, f"{name}-{engine}.json")
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {out} (build {report['build_seconds']:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
