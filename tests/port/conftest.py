from __future__ import annotations

import contextlib
import io
import re
import runpy
from functools import cache
from pathlib import Path

from suanli.port.check import parse_losses

SCRIPTS = Path(__file__).parent / "scripts"
HAND = SCRIPTS / "hand"
RUNNABLE = ["classic_cnn.py", "gpt_events.py", "fused_libs_graph.py"]
ALL_SCRIPTS = [*RUNNABLE, "blockers.py"]
_MARK = re.compile(r"(?<=\S  )# port(?:\[(?P<only>\w+)\])?:")


def marked_lines(script: str, target: str) -> set[int]:
    """Lines the port must report for `target`: `# port:` on every target, `# port[cpu]:` on one."""
    lines = (SCRIPTS / script).read_text(encoding="utf-8").splitlines()
    found = set()
    for number, line in enumerate(lines, start=1):
        mark = _MARK.search(line)
        if mark and mark.group("only") in (None, target):
            found.add(number)
    return found


@cache
def hand_losses(script: str) -> tuple[float, ...]:
    """The losses of the hand-ported CPU version, run once in this process (torch is loaded already)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(HAND / script), run_name="__main__")
    return tuple(parse_losses(out.getvalue()))
