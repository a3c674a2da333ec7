"""`suanli comm plan|bench|tune`: the collective model for a cluster, our collectives timed, and the
selection as NCCL settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from suanli.cli import app
from suanli.cli.output import console, print_json, table
from suanli.comm.select import (
    BENCH_COLLECTIVES,
    COLLECTIVES,
    check_request,
    nccl_baseline,
    nccl_best,
    select,
    sizes_bytes,
)
from suanli.comm.topology import group_links, pool_model
from suanli.comm.tune import env_settings, tuner_csv
from suanli.spec import Cluster, SpecError, load

comm_app = typer.Typer(help="Collective communication: model a cluster's collectives, or time ours.")
app.add_typer(comm_app, name="comm")

_BINARY_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str, field: str) -> int:
    """`8`, `64K`, `1M`, `8G` (binary units, as nccl-tests' -b/-e) -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgtb]?)i?b?\s*", text.lower())
    if not match or int(match.group(1)) <= 0:
        raise SpecError(f"{field}: expected a positive size such as 8, 64K, 1M or 8G, got {text!r}")
    return int(match.group(1)) * _BINARY_UNITS[match.group(2)]


def _pick_pool(cluster: Cluster, pool: str | None, ranks: int) -> str:
    if pool:
        return pool
    for candidate in cluster.pools:
        if cluster.accelerator_count(candidate.name) >= ranks:
            return candidate.name
    raise SpecError(
        f"--ranks: no pool of cluster {cluster.name!r} has {ranks} accelerators; pick one with --pool"
    )


def _human(size: float) -> str:
    for unit, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if size >= scale:
            return f"{size / scale:g}{unit}"
    return f"{size:g}"


@comm_app.command("plan")
def comm_plan(
    cluster_file: Path = typer.Option(..., "--cluster", help="cluster YAML"),
    collective: str = typer.Option("all_reduce", help=", ".join(COLLECTIVES)),
    ranks: int = typer.Option(..., help="number of ranks in the group"),
    pool: str = typer.Option(None, help="pool to place the ranks in (default: the first big enough)"),
    ranks_per_node: int = typer.Option(None, help="ranks per node (default: all accelerators of a node)"),
    min_bytes: str = typer.Option("8", help="smallest message size"),
    max_bytes: str = typer.Option("8G", help="largest message size"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Modelled time, algbw and busbw over message sizes: our choice vs the best algorithm NCCL
    offers under the same model (the gain), with NCCL's own tuner pick beside it.

    Example: suanli comm plan --cluster examples/clusters/hgx-h100-1024.yaml --ranks 1024
    """
    check_request(collective, 1)
    cluster = load(Cluster, cluster_file)
    name = _pick_pool(cluster, pool, ranks)
    model = pool_model(cluster, name)
    links = group_links(model, ranks, ranks_per_node or model.accelerators_per_node)
    if ranks < 2:
        raise SpecError(f"--ranks: a collective needs at least 2 ranks, got {ranks}")
    rows: list[dict[str, Any]] = []
    for size in sizes_bytes(parse_bytes(min_bytes, "--min-bytes"), parse_bytes(max_bytes, "--max-bytes")):
        ours, nccl = select(collective, float(size), links), nccl_best(collective, float(size), links)
        tuner = nccl_baseline(collective, float(size), links)
        rows.append(
            {
                "size_bytes": size,
                "ours": {
                    "algorithm": f"{ours.algorithm}/{ours.protocol}",
                    "time_us": ours.time_s * 1e6,
                    "algbw_gb_s": ours.algbw_gb_s,
                    "busbw_gb_s": ours.busbw_gb_s,
                },
                "nccl": {
                    "algorithm": f"{nccl.algorithm}/{nccl.protocol}",
                    "time_us": nccl.time_s * 1e6,
                    "algbw_gb_s": nccl.algbw_gb_s,
                    "busbw_gb_s": nccl.busbw_gb_s,
                },
                "nccl_tuner_pick": f"{tuner.algorithm}/{tuner.protocol}",
                "gain_pct": (nccl.time_s / ours.time_s - 1) * 100,
            }
        )
    header = {
        "cluster": cluster.name,
        "pool": name,
        "collective": collective,
        "ranks": ranks,
        "ranks_per_node": links.ranks_per_node,
        "nodes": links.nodes,
    }
    if as_json:
        print_json(header | {"rows": rows})
        return
    console.print(
        table(
            f"{collective} over {ranks} ranks ({links.nodes} nodes x {links.ranks_per_node}) "
            f"in pool {name!r} of {cluster.name}",
            [
                "size",
                "ours",
                "time(us)",
                "algbw",
                "busbw",
                "nccl best",
                "time(us) ",
                "busbw ",
                "gain %",
                "tuner",
            ],
            [
                [
                    _human(r["size_bytes"]),
                    r["ours"]["algorithm"],
                    f"{r['ours']['time_us']:,.1f}",
                    f"{r['ours']['algbw_gb_s']:.2f}",
                    f"{r['ours']['busbw_gb_s']:.2f}",
                    r["nccl"]["algorithm"],
                    f"{r['nccl']['time_us']:,.1f}",
                    f"{r['nccl']['busbw_gb_s']:.2f}",
                    f"{r['gain_pct']:.1f}",
                    r["nccl_tuner_pick"],
                ]
                for r in rows
            ],
            caption="modelled (GB/s, nccl-tests algbw/busbw); gain = best NCCL algorithm's time / ours - 1; "
            "tuner = NCCL's own pick",
        )
    )


@comm_app.command("bench")
def comm_bench(
    procs: int = typer.Option(8, help="local processes (gloo on CPU)"),
    ranks_per_node: int = typer.Option(4, help="ranks grouped into one emulated node"),
    collective: list[str] = typer.Option(list(BENCH_COLLECTIVES), help="repeat to pick several"),
    min_bytes: str = typer.Option("1K", help="smallest message size"),
    max_bytes: str = typer.Option("4M", help="largest message size"),
    iters: int = typer.Option(5, min=1),
    warmup: int = typer.Option(1, min=0),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Run our hierarchical collectives and the built-in ones on the same process group.

    Example: suanli comm bench --procs 8 --ranks-per-node 4 --max-bytes 4M
    """
    sizes = sizes_bytes(parse_bytes(min_bytes, "--min-bytes"), parse_bytes(max_bytes, "--max-bytes"))
    from suanli.comm.bench import bench  # torch: imported only when benchmarking

    rows = bench(procs, ranks_per_node, collective, sizes, iters=iters, warmup=warmup)
    if as_json:
        print_json({"procs": procs, "ranks_per_node": ranks_per_node, "backend": "gloo", "rows": rows})
        return
    for name in collective:
        console.print(
            table(
                f"{name}: {procs} gloo processes, {ranks_per_node} per emulated node",
                ["size", "count", "ours time(us)", "algbw", "busbw", "built-in time(us)", "algbw ", "busbw "],
                [
                    [
                        str(r["size_bytes"]),
                        str(r["count"]),
                        f"{r['ours']['time_us']:,.1f}",
                        f"{r['ours']['algbw_gb_s']:.4f}",
                        f"{r['ours']['busbw_gb_s']:.4f}",
                        f"{r['builtin']['time_us']:,.1f}",
                        f"{r['builtin']['algbw_gb_s']:.4f}",
                        f"{r['builtin']['busbw_gb_s']:.4f}",
                    ]
                    for r in rows
                    if r["collective"] == name
                ],
            )
        )


@comm_app.command("tune")
def comm_tune(
    cluster_file: Path = typer.Option(..., "--cluster", help="cluster YAML"),
    emit: str = typer.Option("nccl-tuner", help="nccl-tuner (example tuner plugin CSV) or env"),
    pool: str = typer.Option(None, help="pool (default: the first with accelerators)"),
    ranks: list[int] = typer.Option(None, help="communicator sizes to tune (default: one node, whole pool)"),
    ranks_per_node: int = typer.Option(None, help="ranks per node (default: all accelerators of a node)"),
    output: Path = typer.Option(None, help="write to this file instead of stdout"),
) -> None:
    """NCCL settings from the selection: per collective and size range, the fastest algorithm NCCL
    offers by the cost model, as NCCL's example tuner plugin config or as NCCL_ALGO/NCCL_PROTO.

    Example: suanli comm tune --cluster examples/clusters/hgx-h100-1024.yaml --emit nccl-tuner
    """
    if emit not in ("nccl-tuner", "env"):
        raise SpecError(f"--emit: expected nccl-tuner or env, got {emit!r}")
    cluster = load(Cluster, cluster_file)
    name = pool or next((p.name for p in cluster.pools if cluster.accelerator_count(p.name) > 0), None)
    if name is None:
        raise SpecError(f"--pool: cluster {cluster.name!r} has no pool with accelerators")
    model = pool_model(cluster, name)
    per_node = ranks_per_node or model.accelerators_per_node
    sizes = ranks or sorted({per_node, model.nodes * per_node})
    groups = [group_links(model, n, per_node) for n in sizes if n >= 2]
    if not groups:
        raise SpecError("--ranks: a collective needs at least 2 ranks")
    if emit == "env":
        text = "".join(f'export {key}="{value}"\n' for key, value in env_settings(groups).items())
    else:
        text = tuner_csv(groups, f"cluster {cluster.name}, pool {name}")
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output} ({len(text.splitlines())} lines)")
