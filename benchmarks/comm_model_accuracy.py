"""How close the collective cost model comes to published nccl-tests measurements.

For each row of a collective_bandwidth.csv (default: ../shared/data/collective_bandwidth.csv) it
builds the row's node type and a small cluster, asks which algorithm NCCL would pick
(`comm.nccl_model`), times that choice with our cost models (`comm.cost`), and compares:
- bandwidth points (busbw_gbs): error % of the predicted bus bandwidth at the row's (large) size;
- latency points (time_us): ratio predicted / measured at the smallest size of the row's range.

Bars (issue 4): within 15 % on the large-message busbw points, latency floor within 2x.

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

from suanli.comm.select import nccl_baseline
from suanli.comm.topology import group_links, pool_model
from suanli.spec import CATALOG, Cluster, NodeType, SpecError

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "collective_bandwidth.csv"
LARGE_BYTES = 8 * 2**30

# Intra-node links the accelerator catalog does not describe (GB/s bidirectional per GPU).
BRIDGE_BW_GB_S = {
    "h100-pcie": (600, "NVIDIA H100 PCIe product brief: NVLink bridge 600 GB/s bidirectional"),
    "h200": (900, "NVIDIA H200 NVL datasheet: 2- or 4-way NVLink bridge, 900 GB/s per GPU"),
}
PCIE_GEN5_X16_GB_S = 64  # per direction; PCI-SIG PCIe 5.0
# An 8-GPU PCIe server puts 4 GPUs under each CPU socket; rings cross the socket link, ~50 GB/s
# (kubernetes.recipes "H200 NVL 8-GPU topology bandwidth tiers": PCIe Gen5 + UPI cross-socket).
CROSS_SOCKET_GB_S = 50
NIC_GBIT_S = {"ndr": 400, "hdr": 200, "cx7": 400, "cx6": 200, "400gb": 400, "200gb": 200}


def accelerator_for(gpu: str):  # type: ignore[no-untyped-def]
    """Catalog accelerator for a row's GPU name, trying shorter prefixes (H200-NVL -> H200)."""
    parts = gpu.lower().split("-")
    for end in range(len(parts), 0, -1):
        try:
            return CATALOG.accelerator("-".join(parts[:end]))
        except SpecError:
            continue
    raise SpecError(f"gpu {gpu!r} is not in the accelerator catalog")


def parse_nics(text: str, gpus: int) -> list[dict]:
    text = text.lower()
    if not text:
        return [{"count": 1, "gbit_s": 400, "kind": "infiniband"}]
    speed = next((v for k, v in NIC_GBIT_S.items() if k in text.replace(" ", "")), None)
    if speed is None:
        raise SpecError(f"inter_node {text!r}: NIC speed not recognised")
    count_match = re.match(r"\s*(\d+)\s*x", text)
    count = int(count_match.group(1)) if count_match else 1
    kind = "roce" if "roce" in text else "infiniband"
    if count >= gpus and count % gpus == 0:
        serves = [[i * gpus // count] for i in range(count)]
    else:
        serves = [[j for j in range(gpus) if j * count // gpus == i] for i in range(count)]
    return [{"count": count, "gbit_s": speed, "kind": kind, "serves": serves}]


def node_type_for(row: dict) -> NodeType:
    gpus = int(row["gpus_per_node"] or 1)
    accel = accelerator_for(row["gpu"]) if row["gpu"] else CATALOG.accelerator("h100-sxm")
    intra = row["intra_node"].lower()
    if gpus == 1 or not intra:
        topology = {"kind": "nvswitch", "link_bw_gb_s": 1.0}
    elif "nvswitch" in intra:
        bw = re.search(r"(\d+)\s*gb/s", intra)
        bidirectional = float(bw.group(1)) if bw else accel.intra_node_bw_gb_s
        topology = {
            "kind": "nvswitch",
            "link_bw_gb_s": bidirectional / 2,
            "in_switch_reduction": "nvls" in intra,
        }
        if accel.slug.startswith(("h100", "h200", "h20", "h800")) and "nvls" not in intra:
            topology["in_switch_reduction"] = True  # NVLink SHARP is on by default on Hopper NVSwitch
    elif "bridge" in intra:
        key = next(k for k in BRIDGE_BW_GB_S if accel.slug.startswith(k))
        topology = {"kind": "oam-mesh", "link_bw_gb_s": BRIDGE_BW_GB_S[key][0] / 2}
    elif "pcie" in intra:
        topology = {
            "kind": "pcie-tree",
            "link_bw_gb_s": PCIE_GEN5_X16_GB_S,
            "groups": [list(range(gpus // 2)), list(range(gpus // 2, gpus))],
            "uplink_bw_gb_s": CROSS_SOCKET_GB_S,
        }
    else:
        raise SpecError(f"intra_node {row['intra_node']!r}: not recognised")
    return NodeType.model_validate(
        {
            "slug": re.sub(r"[^a-z0-9.\-]", "-", row["id"].lower()),
            "name": row["config"],
            "accelerator": accel.slug,
            "accelerators_per_node": gpus,
            "topology": topology,
            "nics": parse_nics(row["inter_node"], gpus),
            "cpu_cores": 64,
            "memory_gb": 1024,
            "source": row["source"],
        }
    )


def message_bytes(text: str, smallest: bool) -> float:
    if text.strip().lower().startswith("large"):
        return LARGE_BYTES
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    if not numbers:
        return LARGE_BYTES
    return min(numbers) if smallest else max(numbers)


def predict(row: dict) -> dict:
    node = node_type_for(row)
    nodes = int(row["nodes"] or 1)
    cluster = Cluster(
        name=row["id"], pools=[{"name": "p", "node_type": node.slug, "nodes": nodes}], node_types=[node]
    )
    links = group_links(
        pool_model(cluster, "p"), nodes * node.accelerators_per_node, node.accelerators_per_node
    )
    is_latency = bool(row["time_us"]) and not row["busbw_gbs"]
    size = message_bytes(row["message_bytes"], smallest=is_latency)
    choice = nccl_baseline(row["collective"], size, links)
    result = {"id": row["id"], "algorithm": f"{choice.algorithm}/{choice.protocol}", "message_bytes": size}
    if is_latency:
        measured = float(row["time_us"])
        predicted = choice.time_s * 1e6
        result |= {"kind": "latency", "measured_us": measured, "predicted_us": round(predicted, 1)}
        result["ratio"] = round(max(predicted, measured) / min(predicted, measured), 2)
    else:
        measured = float(row["busbw_gbs"])
        result |= {"kind": "busbw", "measured_gb_s": measured, "predicted_gb_s": round(choice.busbw_gb_s, 1)}
        result["error_pct"] = round(abs(choice.busbw_gb_s - measured) / measured * 100, 1)
    return result


def evaluate(path: Path) -> dict:
    rows, skipped = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append(predict(row))
            except (SpecError, StopIteration, ValueError) as exc:
                skipped.append({"id": row.get("id"), "reason": str(exc).splitlines()[0]})
    errors = [r["error_pct"] for r in rows if r["kind"] == "busbw"]
    ratios = [r["ratio"] for r in rows if r["kind"] == "latency"]
    return {
        "max_busbw_error_pct": max(errors, default=None),
        "median_busbw_error_pct": statistics.median(errors) if errors else None,
        "latency_floor_ratio": max(ratios, default=None),
        "busbw_points": len(errors),
        "within_15_pct": sum(e <= 15 for e in errors),
        "latency_points": len(ratios),
        "rows": rows,
        "skipped": skipped,
        "source": str(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not args.csv.is_file():
        sys.exit(f"error: {args.csv}: file not found")
    report = evaluate(args.csv)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'id':28} {'NCCL pick':18} {'measured':>10} {'predicted':>10} {'error':>8}")
    for r in report["rows"]:
        if r["kind"] == "busbw":
            print(
                f"{r['id']:28} {r['algorithm']:18} {r['measured_gb_s']:>10.1f} {r['predicted_gb_s']:>10.1f} "
                f"{r['error_pct']:>7.1f}%"
            )
        else:
            print(
                f"{r['id']:28} {r['algorithm']:18} {r['measured_us']:>8.1f}us {r['predicted_us']:>8.1f}us "
                f"{r['ratio']:>7.2f}x"
            )
    for s in report["skipped"]:
        print(f"skipped {s['id']}: {s['reason']}")
    print(
        f"max busbw error {report['max_busbw_error_pct']} %, median {report['median_busbw_error_pct']} %, "
        f"{report['within_15_pct']}/{report['busbw_points']} within 15 %, latency floor ratio "
        f"{report['latency_floor_ratio']}x"
    )


if __name__ == "__main__":
    main()
