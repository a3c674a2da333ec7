"""`suanli port` on training scripts: per target, what it finds, whether every CUDA mention is reported,
whether unreported lines survive byte for byte, and how long the rewrite takes.

Recall is judged by the tokenizer, independently of the port: a line is a *CUDA line* when a code
token on it (a name, attribute or string, never a comment) contains `cuda`, `nccl` or `nvml`, or a string
names a `.cu` file or `nvidia-smi`. Recall = CUDA lines the report names / CUDA lines.

    .venv/bin/python benchmarks/port_scripts.py                      # the test scripts, every target
    .venv/bin/python benchmarks/port_scripts.py --scripts a.py b.py  # any scripts (e.g. public ones)
    .venv/bin/python benchmarks/port_scripts.py --run                # also run the CPU ports vs hand ports
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import tempfile
import time
import tokenize
from pathlib import Path

from suanli.port.check import run_script
from suanli.port.engine import port, read_sources, write_ported
from suanli.port.support import support_matrix

HERE = Path(__file__).resolve().parent
TEST_SCRIPTS = HERE.parent / "tests" / "port" / "scripts"
_CUDA_TOKEN = re.compile(r"cuda|nccl|nvml|nvidia-smi|\.cuh?['\"]$", re.IGNORECASE)


def cuda_lines(text: str) -> set[int]:
    """Lines with a code token that mentions CUDA (docstrings and comments excluded)."""
    found = set()
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        docstring = token.type == tokenize.STRING and (
            previous is None or previous.type in (tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT)
        )
        if (
            token.type in (tokenize.NAME, tokenize.STRING)
            and not docstring
            and _CUDA_TOKEN.search(token.string)
        ):
            found.add(token.start[0])
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token
    return found


def unreported_changes(original: str, ported: str, reported: set[int]) -> int:
    """Original lines changed or removed that no finding names (0 = lossless)."""
    matcher = difflib.SequenceMatcher(a=original.splitlines(), b=ported.splitlines(), autojunk=False)
    changed = set()
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            changed |= set(range(i1 + 1, i2 + 1))
    return len(changed - reported)


def survey(paths: list[Path], repeat: int) -> list[dict[str, object]]:
    matrix = support_matrix()
    rows = []
    for path in paths:
        sources = read_sources([path])
        text = path.read_text(encoding="utf-8")
        expected = cuda_lines(text)
        for target in matrix.targets.values():
            started = time.perf_counter()
            for _ in range(repeat):
                result = port(sources, target, matrix)
            elapsed_ms = (time.perf_counter() - started) / repeat * 1000
            reported = {f.line for f in result.findings}
            counts = {a: sum(1 for f in result.findings if f.action == a) for a in ("rewritten", "shimmed")}
            counts |= {
                a: sum(1 for f in result.findings if f.action == a) for a in ("kept", "fallback", "manual")
            }
            rows.append(
                {
                    "script": path.name,
                    "lines": len(text.splitlines()),
                    "target": target.name,
                    "verdict": str(result.verdict),
                    **counts,
                    "recall": f"{len(expected & reported)}/{len(expected)}",
                    "missed_lines": sorted(expected - reported),
                    "unreported_changes": unreported_changes(text, result.files[0].ported, reported),
                    "port_ms": round(elapsed_ms, 1),
                }
            )
    return rows


def run_against_hand_ports(out: Path) -> list[dict[str, object]]:
    rows = []
    cpu = support_matrix().target("cpu")
    for hand in sorted((TEST_SCRIPTS / "hand").glob("*.py")):
        original = TEST_SCRIPTS / hand.name
        write_ported(port(read_sources([original]), cpu), out)
        before, after, reference = run_script(original), run_script(out / hand.name), run_script(hand)
        worst = max(
            (abs(a - b) / abs(b) for a, b in zip(after.losses, reference.losses, strict=True)), default=None
        )
        rows.append(
            {
                "script": hand.name,
                "original_runs_here": before.ran,
                "ported_runs": after.ran,
                "steps": len(after.losses),
                "hand_steps": len(reference.losses),
                "max_rel_diff_vs_hand": worst,
            }
        )
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scripts", nargs="*", type=Path, help="scripts to survey (default: the test scripts)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="ports per timing")
    parser.add_argument("--run", action="store_true", help="run the CPU ports against the hand ports")
    args = parser.parse_args()
    paths = args.scripts or sorted(TEST_SCRIPTS.glob("*.py"))
    print(_table(survey(paths, args.repeat)))
    if args.run:
        print()
        with tempfile.TemporaryDirectory(prefix="suanli-port-") as out:
            print(_table(run_against_hand_ports(Path(out))))


if __name__ == "__main__":
    main()
