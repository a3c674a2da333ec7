"""CLI smoke tests through typer's runner."""

import json

from typer.testing import CliRunner

from suanli.cli import app
from suanli.spec.catalog import CATALOG

runner = CliRunner()


def test_show_accelerators_json_lists_the_whole_catalog():
    result = runner.invoke(app, ["show", "accelerators", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["slug"] for r in rows} == {a.slug for a in CATALOG.accelerators}
    pcie = next(r for r in rows if r["slug"] == "h100-pcie")
    assert "bf16_tflops" in pcie["unknown"]


def test_show_models_table():
    result = runner.invoke(app, ["show", "models"])
    assert result.exit_code == 0
    assert "llama3.1-405b" in result.stdout


def test_show_cluster_totals(examples):
    result = runner.invoke(app, ["show", "cluster", str(examples / "clusters/mixed-center.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["total_accelerators"] == 1024
    # 384 H100 x 989.4 + 256 A100 x 312 + 256 910B x 320 + 128 S4000 x 100 TFLOPS, in PFLOPS
    assert (
        abs(summary["peak_pflops"]["bf16"] - (384 * 989.4 + 256 * 312 + 256 * 320 + 128 * 100) / 1000) < 1e-6
    )


def test_validate_ok_and_bad(tmp_path, examples):
    ok = runner.invoke(app, ["validate", str(examples / "jobs/hpc-lammps.yaml")])
    assert ok.exit_code == 0 and "valid job" in ok.stdout
    bad = tmp_path / "cluster.yaml"
    bad.write_text("name: c\npools:\n- {name: a, node_type: hgx-h100, nodes: -4}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: cluster.yaml: pools[0].nodes: must be > 0, got -4"


def test_every_command_has_help_with_an_example():
    for args in (["show", "accelerators"], ["show", "models"], ["show", "cluster"], ["validate"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout, args
