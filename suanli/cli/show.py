"""`suanli show accelerators|models|cluster`: what the catalog and a cluster file hold."""

from __future__ import annotations

from pathlib import Path

import typer

from suanli.cli import app
from suanli.cli.output import console, fmt, print_json, table
from suanli.spec import CATALOG, Cluster, load

PRECISIONS_SHOWN = ("fp64", "fp32", "bf16", "fp8")

show_app = typer.Typer(
    help="Show the catalog (accelerators, models) or a cluster file.", no_args_is_help=True
)
app.add_typer(show_app, name="show")


@show_app.command("accelerators")
def show_accelerators(
    vendor: str = typer.Option(None, help="only this vendor (case-insensitive substring)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the accelerator catalog, like `sky show-gpus`.

    Example: suanli show accelerators --vendor nvidia
    """
    accels = [a for a in CATALOG.accelerators if not vendor or vendor.lower() in a.vendor.lower()]
    if as_json:
        print_json([a.model_dump(mode="json") | {"unknown": a.unknown_figures()} for a in accels])
        return
    rows = [
        [
            a.slug,
            a.vendor,
            fmt(a.memory_gb),
            fmt(a.memory_bw_gb_s),
            fmt(a.peak("bf16")),
            fmt(a.peak("fp8")),
            fmt(a.peak("fp64"), 1),
            (a.intra_node_link or "?")[:28],
            a.software_stack,
            a.confidence,
        ]
        for a in accels
    ]
    console.print(
        table(
            "Accelerators (dense peaks)",
            ["slug", "vendor", "Mem GB", "GB/s", "BF16 TF", "FP8 TF", "FP64 TF", "link", "stack", "conf."],
            rows,
            caption="? = not published in the catalog's sources (never guessed)",
        )
    )


@show_app.command("models")
def show_models(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """List the model catalog with derived parameter counts.

    Example: suanli show models --json
    """
    if as_json:
        print_json(
            [
                m.model_dump(mode="json") | {"params_b": m.params_b, "active_params_b": m.active_params_b}
                for m in CATALOG.models
            ]
        )
        return
    rows = [
        [
            m.slug,
            str(m.n_layers),
            str(m.hidden),
            f"{m.n_heads}/{m.kv_heads}",
            str(m.ffn_hidden if not m.moe else m.moe.expert_ffn_hidden),
            f"{m.moe.experts}e top{m.moe.top_k}" if m.moe else "dense",
            fmt(m.params_b, 1),
            fmt(m.active_params_b, 1),
            fmt(m.stated_params_b, 1),
        ]
        for m in CATALOG.models
    ]
    console.print(
        table(
            "Models",
            ["slug", "Layers", "Hidden", "Heads q/kv", "FFN", "experts", "Params B", "Active B", "Stated B"],
            rows,
        )
    )


def cluster_summary(cluster: Cluster) -> dict:
    pools = []
    for pool in cluster.pools:
        node = cluster.node_type_of(pool.name)
        accel = cluster.accelerator_of(pool.name)
        count = cluster.accelerator_count(pool.name)
        pools.append(
            {
                "pool": pool.name,
                "node_type": node.slug,
                "nodes": pool.nodes,
                "accelerator": accel.slug if accel else None,
                "accelerators": count,
                "accelerator_memory_tb": accel.memory_gb * count / 1000
                if accel and accel.memory_gb
                else None,
                "bf16_pflops": bf16 * count / 1000 if accel and (bf16 := accel.peak("bf16")) else None,
                "cpu_cores": node.cpu_cores * pool.nodes,
                "cpu_fp64_tflops": node.cpu_fp64_tflops * pool.nodes if node.cpu_fp64_tflops else None,
            }
        )
    return {
        "name": cluster.name,
        "pools": pools,
        "total_nodes": cluster.total_nodes,
        "total_accelerators": cluster.total_accelerators,
        "peak_pflops": {p: cluster.peak_pflops(p)[0] for p in PRECISIONS_SHOWN},
        "peak_unknown_pools": {p: cluster.peak_pflops(p)[1] for p in PRECISIONS_SHOWN},
        "bisection_bw_tb_s": cluster.bisection_bw_gb_s() / 1000,
        "fabric": cluster.fabric.model_dump(),
    }


@show_app.command("cluster")
def show_cluster(
    file: Path = typer.Argument(..., help="cluster YAML"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Summarise a cluster: pools, accelerator totals, peak PFLOPS per precision, memory, bisection.

    Example: suanli show cluster examples/clusters/mixed-center.yaml
    """
    cluster = load(Cluster, file)
    summary = cluster_summary(cluster)
    if as_json:
        print_json(summary)
        return
    rows = [
        [
            p["pool"],
            p["node_type"],
            str(p["nodes"]),
            p["accelerator"] or "(CPU only)",
            str(p["accelerators"]),
            fmt(p["accelerator_memory_tb"], 1),
            fmt(p["bf16_pflops"], 1),
            str(p["cpu_cores"]),
        ]
        for p in summary["pools"]
    ]
    console.print(
        table(
            f"Cluster {cluster.name}",
            ["pool", "node type", "Nodes", "accelerator", "Accel.", "HBM TB", "BF16 PF", "CPU cores"],
            rows,
        )
    )
    peaks = ", ".join(
        f"{p.upper()} {fmt(v, 1)}"
        + (
            f" (+ unknown for {', '.join(summary['peak_unknown_pools'][p])})"
            if summary["peak_unknown_pools"][p]
            else ""
        )
        for p, v in summary["peak_pflops"].items()
    )
    fabric = cluster.fabric
    console.print(f"{summary['total_accelerators']:,} accelerators on {summary['total_nodes']:,} nodes")
    console.print(f"Peak PFLOPS (dense): {peaks}")
    console.print(
        f"Fabric: {fabric.kind}, oversubscription {fabric.oversubscription:g}:1, "
        f"bisection {summary['bisection_bw_tb_s']:,.1f} TB/s"
    )
