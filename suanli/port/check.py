"""Check a port by running it: the first steps' losses of the ported script against the original's.

Scripts report their loss the way training scripts do (`step 3 loss 2.31`, `loss=2.31`); the check
reads those lines from stdout, stops the script once it has enough of them, and compares step by step.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_LOSS = re.compile(r"\bloss\b['\"]?[\s:=]+([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", re.IGNORECASE)
LOSS_REL_TOL = 1e-4


@dataclass(frozen=True)
class RunOutcome:
    script: str
    ran: bool  # exited 0, or was stopped after the asked number of losses
    losses: list[float]
    error: str  # the last line of stderr when it did not run


@dataclass(frozen=True)
class CheckResult:
    original: RunOutcome
    ported: RunOutcome
    compared_steps: int
    max_rel_diff: float | None

    @property
    def same_losses(self) -> bool | None:
        """None when there is nothing to compare with (the original cannot run here)."""
        if not self.original.ran or not self.compared_steps:
            return None
        return self.max_rel_diff is not None and self.max_rel_diff <= LOSS_REL_TOL

    def as_dict(self) -> dict[str, object]:
        return {
            "original": vars(self.original),
            "ported": vars(self.ported),
            "compared_steps": self.compared_steps,
            "max_rel_diff": self.max_rel_diff,
            "same_losses": self.same_losses,
        }


def parse_losses(text: str) -> list[float]:
    return [float(match.group(1)) for match in map(_LOSS.search, text.splitlines()) if match]


def run_script(
    script: Path,
    steps: int | None = None,
    timeout_s: float = 300.0,
    nproc: int = 1,
    args: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> RunOutcome:
    """Run `script` with this interpreter (under torchrun when nproc > 1, reading rank 0's output), in
    `cwd` (default: its own folder), until it ends or has printed `steps` losses."""
    path = str(script) if cwd else script.name
    with tempfile.TemporaryDirectory() as log_dir, tempfile.TemporaryFile(mode="w+") as stderr:
        command = [sys.executable, path, *args]
        if nproc > 1:
            # Every rank's streams are kept in log_dir (--tee), so a failure names the rank that failed
            # and its own last line, not torchrun's summary banner.
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={nproc}",
            ]
            command += ["--local-ranks-filter=0", f"--log-dir={log_dir}", "--tee=3", path, *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            command, cwd=cwd or script.parent, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        losses: list[float] = []
        stopped = False
        try:
            assert process.stdout is not None
            for line in process.stdout:
                losses.extend(parse_losses(line))
                if steps is not None and len(losses) >= steps:
                    stopped = True
                    process.terminate()
                    break
            process.wait()
        finally:
            timer.cancel()
        ran = stopped or process.returncode == 0
        error = "" if ran else _failure(stderr, Path(log_dir), process.returncode)
    return RunOutcome(str(script), ran, losses, error)


def _failure(stderr: IO[str], log_dir: Path, returncode: int) -> str:
    """The line that says why the run failed: the last line a failing rank wrote to its stderr (torchrun
    keeps them under `log_dir`), else the last line of the launcher's own stderr."""
    for rank_log in sorted(log_dir.glob("*/attempt_*/*/stderr.log")):
        lines = [line for line in rank_log.read_text(errors="replace").splitlines() if line.strip()]
        if lines and any("Error" in line or "error" in line for line in lines):
            return f"rank {rank_log.parent.name}: {lines[-1].strip()}"
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {returncode}"


def compare(original: RunOutcome, ported: RunOutcome, steps: int | None) -> CheckResult:
    count = min(len(original.losses), len(ported.losses)) if original.ran else 0
    if steps is not None:
        count = min(count, steps)
    diffs = [
        abs(a - b) / max(abs(a), abs(b), 1e-12)
        for a, b in zip(original.losses[:count], ported.losses[:count], strict=True)
    ]
    worst = max(diffs) if diffs else None
    if worst is not None and any(math.isnan(d) for d in diffs):
        worst = math.inf
    return CheckResult(original, ported, count, worst)


def check(
    original: Path,
    ported: Path,
    steps: int | None = 5,
    timeout_s: float = 300.0,
    nproc: int = 1,
    args: tuple[str, ...] = (),
) -> CheckResult:
    """Run both scripts with the same arguments from the original's folder, so relative data paths
    resolve for both (the original may fail here: then only the ported run is judged)."""
    before = run_script(original, steps, timeout_s, nproc, args)
    after = run_script(ported.resolve(), steps, timeout_s, nproc, args, cwd=original.parent)
    return compare(before, after, steps)
