"""`--check`: losses are read the way training scripts print them, and compared step by step."""

from __future__ import annotations

from pathlib import Path

from suanli.port.check import RunOutcome, compare, parse_losses, run_script
from suanli.port.engine import Verdict, port, read_sources
from suanli.port.support import support_matrix


def test_losses_are_read_in_the_usual_spellings() -> None:
    text = "step 0 loss 2.5\niter 1: loss 2.25, time 3ms\n{'loss': 2.0}\nval_loss=9\nLoss = 1e-3\nlossy 7\n"
    assert parse_losses(text) == [2.5, 2.25, 2.0, 0.001]


def test_losses_are_compared_step_by_step() -> None:
    original = RunOutcome("a.py", True, [2.0, 1.5, 1.0], "")
    assert compare(original, RunOutcome("b.py", True, [2.0, 1.5, 1.0], ""), None).same_losses is True
    drifted = compare(original, RunOutcome("b.py", True, [2.0, 1.5, 1.1], ""), None)
    assert drifted.same_losses is False and abs(drifted.max_rel_diff - 0.1 / 1.1) < 1e-12
    cannot = compare(RunOutcome("a.py", False, [], "no CUDA"), RunOutcome("b.py", True, [2.0], ""), None)
    assert cannot.same_losses is None and cannot.compared_steps == 0


def test_a_folder_reports_its_cuda_kernels_and_skips_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "fused.cu").write_text("__global__ void k() {}\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "vendored.py").write_text("x = y.cuda()\n")
    (tmp_path / "train.py").write_text("import torch\nx = torch.zeros(1)\n")
    result = port(read_sources([tmp_path]), support_matrix().target("musa"))
    assert [f.file for f in result.files] == ["train.py"]
    assert [(f.file, f.what, f.action) for f in result.findings] == [("ops/fused.cu", "fused.cu", "manual")]
    assert result.verdict is Verdict.MANUAL


def test_a_failing_rank_is_named_with_its_own_error(tmp_path: Path) -> None:
    """torchrun's summary banner is not the cause: the failing rank and its last stderr line are."""
    script = tmp_path / "fails_on_rank_1.py"
    script.write_text(
        "import os\n"
        "print('step 0 loss 1.0')\n"
        "if os.environ['RANK'] == '1':\n"
        "    raise ValueError('rank one cannot read its shard')\n"
    )
    outcome = run_script(script, nproc=2, timeout_s=120)
    assert not outcome.ran
    assert outcome.losses == [1.0]
    assert outcome.error == "rank 1: ValueError: rank one cannot read its shard"
