"""The rewrite is lossless: lines it does not report are byte-identical, and what it writes is what the
device-agnostic API means."""

from __future__ import annotations

import difflib

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.port.engine import port, read_sources
from suanli.port.rewrite import port_source
from suanli.port.support import support_matrix
from tests.port.conftest import ALL_SCRIPTS, SCRIPTS, marked_lines


@pytest.mark.parametrize("target", ["npu", "musa", "cpu", "hpu"])
@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_untouched_lines_are_byte_identical(script: str, target: str) -> None:
    result = port(read_sources([SCRIPTS / script]), support_matrix().target(target))
    file = result.files[0]
    before = file.original.splitlines(keepends=True)
    after = file.ported.splitlines(keepends=True)
    reported = {finding.line for finding in result.findings}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            assert set(range(i1 + 1, i2 + 1)) <= reported, f"unreported change at {script}:{i1 + 1}"
        if tag == "insert":  # only the plug-in and shim imports are added
            assert all("# suanli port:" in line for line in after[j1:j2])


def _port(source: str, target: str) -> str:
    matrix = support_matrix()
    return port_source("t.py", cst.parse_module(source), matrix.target(target), matrix).ported


def test_amp_keeps_cuda_defaults_and_positional_meaning() -> None:
    ported = _port(
        "import torch\n"
        "with torch.cuda.amp.autocast(True, torch.bfloat16):\n    pass\n"
        "with torch.cuda.amp.autocast():  # fp16 is CUDA's default\n    pass\n"
        "scaler = torch.cuda.amp.GradScaler(2.0**10)\n",
        "musa",
    )
    assert 'torch.amp.autocast("musa", enabled=True, dtype=torch.bfloat16)' in ported
    assert 'torch.amp.autocast("musa", dtype=torch.float16):  # fp16 is CUDA\'s default' in ported
    assert 'torch.amp.GradScaler("musa", 2.0**10)' in ported


def test_from_imports_of_cuda_amp_follow_their_alias() -> None:
    ported = _port(
        "import torch\nfrom torch.cuda.amp import autocast as ac, GradScaler\n"
        "with ac(enabled=False):\n    pass\ns = GradScaler()\n",
        "npu",
    )
    assert "from torch.amp import autocast as ac, GradScaler" in ported
    assert 'ac("npu", enabled=False, dtype=torch.float16)' in ported
    assert 's = GradScaler("npu")' in ported


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("npu", ['.to(torch.device("npu", rank))', "f'npu:{rank}'", "'hccl'", "'ASCEND_RT_VISIBLE_DEVICES'"]),
        ("mlu", ['.to(torch.device("mlu", rank))', "f'mlu:{rank}'", "'cncl'", "'MLU_VISIBLE_DEVICES'"]),
        ("cpu", ['.to("cpu")', "'cpu'", "'gloo'", "'CUDA_VISIBLE_DEVICES'"]),
    ],
)
def test_devices_backends_and_variables_follow_the_device_table(target: str, expected: list[str]) -> None:
    ported = _port(
        "import os\nimport torch\nx = y.cuda(rank)\nd = f'cuda:{rank}'\nb = 'nccl'\n"
        "os.environ['CUDA_VISIBLE_DEVICES'] = '0'\n",
        target,
    )
    for text in expected:
        assert text in ported


def test_the_vendor_plugin_is_imported_right_after_torch() -> None:
    ported = _port("import os\nimport torch\nx = torch.zeros(1).cuda()\n", "npu").splitlines()
    assert ported[1:3] == ["import torch", "import torch_npu  # suanli port: registers the npu device"]


def test_is_cuda_asks_for_the_target_device_and_profiler_activity_is_reported() -> None:
    source = "import torch\nif x.is_cuda:\n    acts = [torch.profiler.ProfilerActivity.CUDA]\n"
    assert 'if (x.device.type == "npu"):' in _port(source, "npu")
    matrix = support_matrix()
    result = port_source("t.py", cst.parse_module(source), matrix.target("cpu"), matrix)
    assert result.ported == source  # on CPU both are kept: is_cuda is False, the activity records nothing
    assert [(f.line, f.action) for f in result.findings] == [(2, "kept"), (3, "kept")]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    comments=st.lists(
        st.text(st.characters(min_codepoint=32, max_codepoint=0x4E2D, exclude_characters="\\"), max_size=20),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 10_000),
)
def test_comments_and_spacing_anywhere_survive_the_rewrite(comments: list[str], seed: int) -> None:
    """Trailing comments (any text, CJK included) and odd spacing added to unreported lines come back
    byte for byte."""
    import random

    rng = random.Random(seed)
    lines = (SCRIPTS / "gpt_events.py").read_text().splitlines(keepends=True)
    marked = marked_lines("gpt_events.py", "npu")
    candidates = [
        i for i, line in enumerate(lines, 1) if i not in marked and line.strip() and '"""' not in line
    ]
    edited = list(lines)
    for comment in comments:
        at = rng.choice(candidates)
        body = edited[at - 1].rstrip("\n")
        if "#" not in body and not body.rstrip().endswith((":", ",", "(", "[", "\\")):
            edited[at - 1] = f"{body}{' ' * rng.randint(1, 4)}#{comment}\n"
    source = "".join(edited)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:  # a comment inside a multi-line string literal; not this property
        return
    matrix = support_matrix()
    ported = port_source("t.py", module, matrix.target("npu"), matrix).ported.split("\n")
    ported = [line for line in ported if "# suanli port:" not in line]
    for number, (before, after) in enumerate(zip(source.split("\n"), ported, strict=True), 1):
        if number not in marked:
            assert before == after


def test_float8_is_manual_where_the_matrix_has_no_float8() -> None:
    matrix = support_matrix()
    source = cst.parse_module("import torch\nw8 = w.to(torch.float8_e4m3fn)\n")
    actions = {
        name: [f.action for f in port_source("t.py", source, target, matrix).findings]
        for name, target in matrix.targets.items()
    }
    assert actions == {
        name: ([] if target.dtypes["float8"] else ["manual"]) for name, target in matrix.targets.items()
    }
    assert actions["npu"] == ["manual"] and actions["musa"] == []
