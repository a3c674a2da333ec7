"""The reports: every CUDA construct of the test scripts is named with file:line, per target, and the
verdict follows from what cannot move."""

from __future__ import annotations

import pytest

from suanli.port.engine import Verdict, port, read_sources
from suanli.port.rewrite import Action
from suanli.port.support import support_matrix
from tests.port.conftest import ALL_SCRIPTS, RUNNABLE, SCRIPTS, marked_lines

TARGETS = ["npu", "musa", "mlu", "xpu", "hpu", "cpu"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_every_marked_line_and_nothing_else_is_reported(script: str, target: str) -> None:
    result = port(read_sources([SCRIPTS / script]), support_matrix().target(target))
    reported = {finding.line for finding in result.findings}
    assert all(finding.file == script for finding in result.findings)
    assert reported == marked_lines(script, target)


@pytest.mark.parametrize("target", ["npu", "musa", "cpu"])
@pytest.mark.parametrize("script", RUNNABLE)
def test_the_runnable_scripts_move_after_the_rewrite(script: str, target: str) -> None:
    result = port(read_sources([SCRIPTS / script]), support_matrix().target(target))
    assert result.verdict is Verdict.AFTER_REWRITE
    assert not [f for f in result.findings if f.action is Action.MANUAL]


@pytest.mark.parametrize("target", TARGETS)
def test_what_cannot_move_is_manual_with_the_vendor_alternative(target: str) -> None:
    matrix = support_matrix()
    result = port(read_sources([SCRIPTS / "blockers.py"]), matrix.target(target))
    assert result.verdict is Verdict.MANUAL
    manual = {f.what: f for f in result.findings if f.action is Action.MANUAL}
    assert "torch.cuda.get_device_capability" in manual
    assert "my_ops_kernel.cu" in manual and "CUDAExtension" in manual
    for finding in manual.values():
        assert finding.detail
    for key, module in [("xformers", "import xformers.ops"), ("nvml", "import pynvml")]:
        library = matrix.target(target).libraries[key]
        if library.status != "supported":
            assert manual[module].alternative == library.alternative
            assert manual[module].source == library.source


def test_graph_capture_moves_only_where_the_stack_has_graphs() -> None:
    matrix = support_matrix()
    sources = read_sources([SCRIPTS / "blockers.py"])
    graph_line = 30
    actions = {
        name: next(f.action for f in port(sources, matrix.target(name)).findings if f.line == graph_line)
        for name in TARGETS
    }
    assert actions == {
        "npu": Action.REWRITTEN,
        "musa": Action.REWRITTEN,
        "mlu": Action.REWRITTEN,
        "xpu": Action.REWRITTEN,
        "hpu": Action.MANUAL,
        "cpu": Action.MANUAL,
    }


def test_cuda_only_imports_behind_a_fallback_do_not_block() -> None:
    result = port(read_sources([SCRIPTS / "fused_libs_graph.py"]), support_matrix().target("npu"))
    fallbacks = {f.what for f in result.findings if f.action is Action.FALLBACK}
    assert fallbacks == {"import apex.optimizers", "import flash_attn"}


def test_a_script_without_cuda_runs_as_is_and_is_left_alone() -> None:
    sources = read_sources([SCRIPTS / "hand" / "classic_cnn.py"])
    for target in TARGETS:
        result = port(sources, support_matrix().target(target))
        assert result.verdict is Verdict.AS_IS
        assert result.files[0].ported == result.files[0].original
