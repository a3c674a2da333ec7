from __future__ import annotations

import re
from pathlib import Path

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
