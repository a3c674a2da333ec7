"""`suanli port` at the command line: reports, diffs, written files, the support matrix, and one line
for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.port.support import support_matrix
from tests.port.conftest import SCRIPTS, marked_lines

runner = CliRunner()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["port", *args])


@pytest.mark.parametrize("target", ["npu", "musa"])
def test_the_report_names_every_finding_with_file_and_line(target: str) -> None:
    result = _run(str(SCRIPTS / "gpt_events.py"), "--target", target)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("runs after the rewrite")
    for line in marked_lines("gpt_events.py", target):
        assert f"gpt_events.py:{line} " in result.output


def test_any_reports_every_target_as_json() -> None:
    result = _run(str(SCRIPTS / "blockers.py"), "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)["targets"]
    assert [r["target"] for r in reports] == list(support_matrix().targets)
    assert {r["verdict"] for r in reports} == {"needs the listed manual changes"}


def test_diff_and_written_files_agree(tmp_path: Path) -> None:
    result = _run(str(SCRIPTS / "classic_cnn.py"), "--target", "npu", "--diff", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    written = (tmp_path / "classic_cnn.py").read_text()
    assert '+    model = build_model().to("npu")  # port: .cuda()' in result.output
    assert 'model = build_model().to("npu")  # port: .cuda()' in written
    assert "import torch_npu" in written


def test_list_targets_shows_the_matrix_with_sources() -> None:
    result = runner.invoke(app, ["port", "--list-targets", "--json"])
    assert result.exit_code == 0, result.output
    targets = json.loads(result.output)
    assert set(targets) == {"npu", "musa", "mlu", "xpu", "hpu", "cpu"}
    for target in targets.values():
        assert target["sources"] and all(lib["source"] for lib in target["libraries"].values())


@pytest.mark.parametrize(
    ("content", "name", "args", "message"),
    [
        ("a: 1\n", "job.yaml", [], "job.yaml: not a Python file"),
        ("def f(:\n    pass\n", "broken.py", [], "broken.py:1:7: syntax error: invalid syntax"),
        ("import torch\n", "ok.py", ["--target", "tpu"], "--target: unknown target 'tpu'; known: npu, musa"),
        ("import torch\n", "ok.py", ["--diff"], "--target: name one target to write or diff"),
        ("import torch\n", "ok.py", ["--check", "--target", "npu"], "--check: runs on this machine's device"),
    ],
)
def test_bad_input_gets_one_line(
    tmp_path: Path, content: str, name: str, args: list[str], message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(app, ["port", str(path), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_the_originals_are_never_overwritten(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import torch\nx = torch.zeros(1).cuda()\n")
    result = _run(str(script), "--target", "npu", "-o", str(tmp_path))
    assert result.exit_code == 2 and "holds the originals" in result.output
    assert script.read_text() == "import torch\nx = torch.zeros(1).cuda()\n"


def test_a_missing_script_gets_one_line(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "absent.py"))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'absent.py'}: file not found"
