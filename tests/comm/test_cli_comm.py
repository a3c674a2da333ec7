"""`suanli comm plan` and `suanli comm bench` end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from tests.comm.conftest import EXAMPLES

runner = CliRunner()
HGX = str(EXAMPLES / "hgx-h100-1024.yaml")


def test_plan_json_covers_8_bytes_to_8_gib_with_ours_never_slower_than_nccl() -> None:
    result = runner.invoke(
        app, ["comm", "plan", "--cluster", HGX, "--collective", "all_reduce", "--ranks", "1024", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    sizes = [row["size_bytes"] for row in report["rows"]]
    assert sizes[0] == 8 and sizes[-1] == 8 * 2**30 and len(sizes) == 31
    assert report["nodes"] == 128
    for row in report["rows"]:
        assert row["ours"]["time_us"] <= row["nccl"]["time_us"]
        assert row["gain_pct"] >= 0
    largest = report["rows"][-1]
    assert 300 < largest["nccl"]["busbw_gb_s"] < 400  # bounded by 8 x 400 Gb/s per node


def test_plan_table_on_the_mixed_cluster_picks_a_big_enough_pool() -> None:
    result = runner.invoke(
        app,
        [
            "comm",
            "plan",
            "--cluster",
            str(EXAMPLES / "mixed-center.yaml"),
            "--collective",
            "all_to_all",
            "--ranks",
            "256",
            "--max-bytes",
            "1M",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pool 'h100'" in result.stdout and "gain %" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ranks", "8", "--collective", "all_sum"], "collective: unknown 'all_sum'"),
        (["--ranks", "4096"], "no pool of cluster"),
        (["--ranks", "1"], "needs at least 2 ranks"),
        (["--ranks", "8", "--min-bytes", "0"], "--min-bytes: expected a positive size"),
        (["--ranks", "8", "--pool", "a100"], "pool: 'a100' is not in cluster"),
    ],
)
def test_plan_bad_input_is_one_line_and_exit_2(args, message) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["comm", "plan", "--cluster", HGX, *args])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_bench_runs_ours_and_builtin_on_4_gloo_processes() -> None:
    result = runner.invoke(
        app,
        [
            "comm",
            "bench",
            "--procs",
            "4",
            "--ranks-per-node",
            "2",
            "--min-bytes",
            "1K",
            "--max-bytes",
            "2K",
            "--iters",
            "1",
            "--collective",
            "all_reduce",
            "--collective",
            "all_to_all",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["collective"], r["size_bytes"]) for r in rows] == [
        ("all_reduce", 1024),
        ("all_reduce", 2048),
        ("all_to_all", 1024),
        ("all_to_all", 2048),
    ]
    for row in rows:
        for side in ("ours", "builtin"):
            assert row[side]["time_us"] > 0 and row[side]["busbw_gb_s"] > 0


def test_bench_rejects_a_world_that_nodes_do_not_divide() -> None:
    result = runner.invoke(app, ["comm", "bench", "--procs", "6", "--ranks-per-node", "4"])
    assert result.exit_code == 2
    assert "must be >= 2 and a multiple of ranks_per_node" in result.output
