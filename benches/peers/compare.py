"""Put database reports side by side: `shoal bench --engine shard`, `shoal bench --server URL
--defaults` and the Qdrant peer (`qdrant_edge_peer.py`), each run several times.

Reports are grouped by series (the label, else the engine); within a series, each workload's recall
and QPS are the medians over its runs. For every workload (unfiltered, then each filter
selectivity) the table shows each series' recall@k, QPS and QPS as a multiple of its own
unfiltered QPS, then the QPS of the first series divided by each other series'.

    python3 benches/peers/compare.py out/shoal-shard-*.json out/qdrant-edge-*.json [--markdown]

Standard library only.
"""
import argparse
import json
import statistics
import sys
from collections import OrderedDict


def workload_key(row):
    s = row.get("selectivity")
    return -1.0 if s is None else float(s)


def workload_name(key):
    return "none" if key < 0 else f"{key * 100:g}%"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+")
    p.add_argument("--markdown", action="store_true", help="a Markdown table instead of fixed width")
    args = p.parse_args()

    series = OrderedDict()
    for path in args.reports:
        with open(path) as f:
            report = json.load(f)
        name = report.get("label") or report.get("engine", "unknown")
        series.setdefault(name, []).append(report)

    datasets = {(r["dataset"], r["n"], r["dim"]) for runs in series.values() for r in runs}
    if len(datasets) > 1:
        sys.exit(f"reports are from different datasets: {sorted(datasets)}")
    dataset, n, dim = datasets.pop()

    # series -> workload -> (median recall, median qps, runs)
    medians = OrderedDict()
    workloads = set()
    for name, runs in series.items():
        per = {}
        for r in runs:
            for row in r["results"]:
                per.setdefault(workload_key(row), []).append(row)
        medians[name] = {
            key: (statistics.median(x["recall"] for x in rows), statistics.median(x["qps"] for x in rows), len(rows))
            for key, rows in per.items()
        }
        workloads.update(per)
    workloads = sorted(workloads)
    names = list(medians)

    def cell_row(key):
        cells = [workload_name(key)]
        for name in names:
            m = medians[name].get(key)
            base = medians[name].get(-1.0)
            if m is None:
                cells += ["-", "-", "-"]
                continue
            ratio = f"{m[1] / base[1]:.2f}" if base and base[1] > 0 else "-"
            cells += [f"{m[0]:.4f}", f"{m[1]:.1f}", ratio]
        first = medians[names[0]].get(key)
        for name in names[1:]:
            other = medians[name].get(key)
            cells.append(f"{first[1] / other[1]:.2f}" if first and other and other[1] > 0 else "-")
        return cells

    header = ["filter"]
    for name in names:
        header += [f"{name} recall", f"{name} QPS", "x unfilt"]
    header += [f"{names[0]} / {name} QPS" for name in names[1:]]
    rows = [cell_row(key) for key in workloads]

    runs = ", ".join(f"{name}: {len(r)} run(s)" for name, r in series.items())
    print(f"{dataset}: n={n} dim={dim}; medians over runs ({runs})")
    for name, rs in series.items():
        seg = [r.get("segments") for r in rs if r.get("segments") is not None]
        idx = [r.get("indexed_points") for r in rs if r.get("indexed_points") is not None]
        wait = [r.get("index_wait_seconds") for r in rs if r.get("index_wait_seconds") is not None]
        idle = [r.get("idle_wait_seconds") for r in rs if r.get("idle_wait_seconds") is not None]
        build = [r.get("build_seconds") for r in rs if r.get("build_seconds") is not None]
        # index wait: until every point was indexed; idle wait: until builds and merges stopped.
        print(f"  {name}: segments {statistics.median(seg) if seg else '?'}, indexed points "
              f"{statistics.median(idx) if idx else '?'}/{n}, load+index {statistics.median(build):.1f}s"
              f"{f', every point indexed {statistics.median(wait):.1f}s after the load' if wait else ''}"
              f"{f', idle {statistics.median(idle):.1f}s after it' if idle else ''}")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
