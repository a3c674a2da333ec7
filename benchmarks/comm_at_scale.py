"""Modelled gain of our algorithm selection over the best NCCL algorithm, at 128, 1,024 and 8,192 GPUs.

The judge is the fastest of the algorithms NCCL v2.30.7-1 offers for the call (ring, tree, NVLS,
NVLS-tree, CollNet, PAT), timed with the same cost models (`comm.cost`) and the same per-step latency
table as ours: every figure is *modelled*, and a gain is what an algorithm NCCL lacks earns on the
model. NCCL's own tuner pick (`comm.nccl_model`) is listed beside it.

Clusters: the HGX H100 rail-optimized fat tree
(examples/clusters/hgx-h100-1024.yaml, rebuilt with 1,024 nodes for 8,192 GPUs) and the mixed
example cluster (examples/clusters/mixed-center.yaml: 2:1 oversubscribed fat tree). A group lives
in one pool, so on the mixed cluster each accelerator pool is measured at 128 ranks, and its fabric
(2:1, radix 64) is rebuilt with 128 / 1,024 HGX H100 nodes for 1,024 and 8,192 GPUs.

    .venv/bin/python benchmarks/comm_at_scale.py [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from suanli.comm.select import nccl_baseline, nccl_best, select
from suanli.comm.topology import group_links, pool_model
from suanli.spec import Cluster, load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clusters"
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
SIZES = [8 * 4**k for k in range(16)]  # 8 B .. 8 GiB
GAIN_BAR = 0.10


def scaled(cluster: Cluster, nodes: int) -> Cluster:
    """The same fabric with one HGX H100 pool of `nodes` nodes."""
    return Cluster(
        name=f"{cluster.name}-h100x{nodes}",
        pools=[{"name": "h100", "node_type": "hgx-h100", "nodes": nodes}],
        fabric=cluster.fabric,
    )


def cases() -> list[tuple[str, Cluster, str, int]]:
    hgx = load(Cluster, EXAMPLES / "hgx-h100-1024.yaml")
    mixed = load(Cluster, EXAMPLES / "mixed-center.yaml")
    result = [("hgx-h100 rail-optimized 1:1", hgx, "h100", n) for n in (128, 1024)]
    result.append(("hgx-h100 rail-optimized 1:1", scaled(hgx, 1024), "h100", 8192))
    result += [(f"mixed-center pool {p}", mixed, p, 128) for p in ("h100", "a100", "ascend", "s4000")]
    result += [
        ("mixed-center fabric (2:1 fat tree), H100 nodes", scaled(mixed, n // 8), "h100", n)
        for n in (1024, 8192)
    ]
    return result


def measure() -> list[dict]:
    rows = []
    for label, cluster, pool, ranks in cases():
        model = pool_model(cluster, pool)
        links = group_links(model, ranks, model.accelerators_per_node)
        for collective in COLLECTIVES:
            points = []
            for size in SIZES:
                ours = select(collective, float(size), links)
                judge = nccl_best(collective, float(size), links)
                tuner = nccl_baseline(collective, float(size), links)
                points.append(
                    {
                        "size_bytes": size,
                        "ours": f"{ours.algorithm}/{ours.protocol}",
                        "nccl_best": f"{judge.algorithm}/{judge.protocol}",
                        "nccl_tuner_pick": f"{tuner.algorithm}/{tuner.protocol}",
                        "ours_us": round(ours.time_s * 1e6, 2),
                        "nccl_best_us": round(judge.time_s * 1e6, 2),
                        "nccl_tuner_pick_us": round(tuner.time_s * 1e6, 2),
                        "gain_pct": round((judge.time_s / ours.time_s - 1) * 100, 1),
                    }
                )
            winning = _ranges([p["gain_pct"] >= GAIN_BAR * 100 for p in points])
            rows.append(
                {
                    "case": label,
                    "figures": "modelled",
                    "pool": pool,
                    "ranks": ranks,
                    "collective": collective,
                    "max_gain_pct": max(p["gain_pct"] for p in points),
                    "gain_at_1MiB_pct": next(p["gain_pct"] for p in points if p["size_bytes"] >= 2**20),
                    "gain_at_largest_pct": points[-1]["gain_pct"],
                    "sizes_with_10pct_gain": winning,
                    "points": points,
                }
            )
    return rows


def _ranges(flags: list[bool]) -> list[list[int]]:
    """Contiguous runs of SIZES where the flag holds, as [first, last] pairs."""
    runs: list[list[int]] = []
    for size, flag in zip(SIZES, flags, strict=True):
        if not flag:
            continue
        if runs and runs[-1][1] * 4 == size:
            runs[-1][1] = size
        else:
            runs.append([size, size])
    return runs


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n // scale} {unit}"
    return f"{n} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--detail", action="store_true", help="also print every size")
    args = parser.parse_args()
    rows = measure()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("Modelled gain over the best NCCL algorithm under the same cost model")
    print(
        "| case | ranks | collective | max gain | gain at 1 MiB | gain at 8 GiB | sizes with >= 10 % gain |"
    )
    print("|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        window = (
            ", ".join(
                _size(a) if a == b else f"{_size(a)} .. {_size(b)}" for a, b in r["sizes_with_10pct_gain"]
            )
            or "none"
        )
        print(
            f"| {r['case']} | {r['ranks']} | {r['collective']} | {r['max_gain_pct']:.0f} % | "
            f"{r['gain_at_1MiB_pct']:.0f} % | {r['gain_at_largest_pct']:.0f} % | {window} |"
        )
    if args.detail:
        for r in rows:
            print(f"\n{r['case']} {r['ranks']} {r['collective']}")
            for p in r["points"]:
                print(
                    f"  {_size(p['size_bytes']):>8}  ours {p['ours']:24} {p['ours_us']:>12.1f} us   "
                    f"nccl best {p['nccl_best']:18} {p['nccl_best_us']:>12.1f} us   "
                    f"(tuner {p['nccl_tuner_pick']})   gain {p['gain_pct']:6.1f} %"
                )


if __name__ == "__main__":
    main()
