"""How close the collective cost model comes to published nccl-tests measurements.

For each row of datasets/collectives/collective_bandwidth.csv it builds the row's cluster (the
row's node type, from the catalog or datasets/collectives/node_types.yaml, on the row's node count),
asks which algorithm NCCL would pick (`comm.nccl_model`; the row's `forced_algorithm` when the run
set NCCL_ALGO), times that pick with our cost models
(`comm.cost`) and compares:
- bandwidth points (busbw_gbs): error % of the predicted bus bandwidth at the row's (large) size;
- latency points (time_us): ratio predicted / measured at the smallest size of the row's range.

Headline figures cover the measured rows (logs, maintainers' statements, measured blog figures);
expectations and rows the model cannot explain are reported apart with their reason. Errors are also
broken down per collective and per fabric (intra-node link family, and the network).

    .venv/bin/python benchmarks/comm_model_accuracy.py [--csv FILE] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path

from suanli.comm.select import evaluate as evaluate_choice
from suanli.comm.select import nccl_baseline
from suanli.comm.topology import group_links, pool_model
from suanli.spec import CATALOG, Cluster, NodeType, SpecError
from suanli.spec.datasets import dataset_path, read_text
from suanli.spec.io import parse_yaml
from suanli.spec.node import link_generation

LARGE_BYTES = 8 * 2**30


def local_node_types() -> dict[str, NodeType]:
    path = dataset_path("collectives/node_types.yaml")
    entries = parse_yaml(read_text(path), source=str(path))["node_types"]
    return {entry["slug"]: NodeType.model_validate(entry) for entry in entries}


def node_type_for(slug: str, local: dict[str, NodeType]) -> NodeType:
    return local[slug] if slug in local else CATALOG.node_type(slug, field="node_type")


def fabric_of(node: NodeType, nodes: int) -> str:
    """'<intra link family> + <network>' of a row, e.g. 'nvlink + infiniband', 'pcie + none'."""
    families = {link_generation(name).family for name in node.link_names()}
    intra = "+".join(sorted(families)) if node.accelerators_per_node > 1 else "none"
    net = "none" if nodes == 1 else ",".join(sorted({nic.kind for nic in node.nics}))
    return f"{intra} + {net}"


def message_bytes(text: str, smallest: bool) -> float:
    if text.strip().lower().startswith("large"):
        return LARGE_BYTES
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    if not numbers:
        return LARGE_BYTES
    return min(numbers) if smallest else max(numbers)


def predict(row: dict, local: dict[str, NodeType]) -> dict:
    node = node_type_for(row["node_type"], local)
    nodes = int(row["nodes"] or 1)
    cluster = Cluster(
        name=row["id"], pools=[{"name": "p", "node_type": node.slug, "nodes": nodes}], node_types=[node]
    )
    per_node = node.accelerators_per_node
    links = group_links(pool_model(cluster, "p"), nodes * per_node, per_node)
    is_latency = bool(row["time_us"]) and not row["busbw_gbs"]
    size = message_bytes(row["message_bytes"], smallest=is_latency)
    forced = row.get("forced_algorithm", "")
    if forced:  # the run set NCCL_ALGO / NCCL_PROTO: time that algorithm, not NCCL's pick
        algorithm, protocol = forced.split("/")
        choice = evaluate_choice(row["collective"], algorithm, protocol, size, links)
    else:
        choice = nccl_baseline(row["collective"], size, links)
    result = {
        "id": row["id"],
        "collective": row["collective"],
        "fabric": fabric_of(node, nodes),
        "evidence": row["evidence"],
        "reported_apart": row["reported_apart"],
        "algorithm": f"{choice.algorithm}/{choice.protocol}",
        "message_bytes": size,
    }
    if is_latency:
        measured, predicted = float(row["time_us"]), choice.time_s * 1e6
        result |= {"kind": "latency", "measured_us": measured, "predicted_us": round(predicted, 1)}
        result["ratio"] = round(max(predicted, measured) / min(predicted, measured), 2)
    else:
        measured = float(row["busbw_gbs"])
        result |= {"kind": "busbw", "measured_gb_s": measured, "predicted_gb_s": round(choice.busbw_gb_s, 1)}
        result["error_pct"] = round(abs(choice.busbw_gb_s - measured) / measured * 100, 1)
    return result


def _by(rows: list[dict], key: str) -> dict[str, dict]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r["error_pct"])
    return {
        k: {"points": len(v), "max_error_pct": max(v), "median_error_pct": statistics.median(v)}
        for k, v in groups.items()
    }


def evaluate(path: Path) -> dict:
    local = local_node_types()
    rows, skipped = [], []
    for row in csv.DictReader(read_text(path).splitlines()):
        try:
            rows.append(predict(row, local))
        except (SpecError, KeyError, ValueError) as exc:
            skipped.append({"id": row.get("id"), "reason": str(exc).splitlines()[0]})
    headline = [r for r in rows if not r["reported_apart"]]
    apart = [r for r in rows if r["reported_apart"]]
    busbw = [r for r in headline if r["kind"] == "busbw"]
    errors = [r["error_pct"] for r in busbw]
    ratios = [r["ratio"] for r in headline if r["kind"] == "latency"]
    return {
        "max_busbw_error_pct": max(errors, default=None),
        "median_busbw_error_pct": statistics.median(errors) if errors else None,
        "latency_floor_ratio": max(ratios, default=None),
        "busbw_points": len(errors),
        "within_15_pct": sum(e <= 15 for e in errors),
        "over_15_pct": sorted(r["id"] for r in busbw if r["error_pct"] > 15),
        "latency_points": len(ratios),
        "per_collective": _by(busbw, "collective"),
        "per_fabric": _by(busbw, "fabric"),
        "reported_apart": [
            {k: r.get(k) for k in ("id", "kind", "error_pct", "ratio", "reported_apart")} for r in apart
        ],
        "rows": rows,
        "skipped": skipped,
        "source": "datasets/collectives/collective_bandwidth.csv" if path == default_csv() else str(path),
    }


def default_csv() -> Path:
    return dataset_path("collectives/collective_bandwidth.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="default: datasets/collectives/")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    path = args.csv or default_csv()
    if not path.is_file():
        sys.exit(f"error: {path}: file not found")
    report = evaluate(path)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'id':32} {'evidence':11} {'NCCL pick':18} {'measured':>10} {'predicted':>10} {'error':>8}")
    for r in report["rows"]:
        mark = " (apart)" if r["reported_apart"] else ""
        if r["kind"] == "busbw":
            figures = f"{r['measured_gb_s']:>10.1f} {r['predicted_gb_s']:>10.1f} {r['error_pct']:>7.1f}%"
        else:
            figures = f"{r['measured_us']:>8.1f}us {r['predicted_us']:>8.1f}us {r['ratio']:>7.2f}x"
        print(f"{r['id']:32} {r['evidence']:11} {r['algorithm']:18} {figures}{mark}")
    for s in report["skipped"]:
        print(f"skipped {s['id']}: {s['reason']}")
    for title in ("per_collective", "per_fabric"):
        for key, v in report[title].items():
            print(
                f"{title[4:]:10} {key:28} {v['points']} points, max {v['max_error_pct']} %, "
                f"median {v['median_error_pct']:.1f} %"
            )
    print(
        f"measured rows: max busbw error {report['max_busbw_error_pct']} %, median "
        f"{report['median_busbw_error_pct']} %, {report['within_15_pct']}/{report['busbw_points']} "
        f"within 15 %, latency floor ratio {report['latency_floor_ratio']}x; "
        f"{len(report['reported_apart'])} rows reported apart"
    )


if __name__ == "__main__":
    main()
