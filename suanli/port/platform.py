"""The port inside the platform: which pools can run a job's script, the ported copy each pool runs,
and the command that picks the copy on the pool the scheduler grants.

A job names its script (relative to its working folder) and `port: auto` or `off`. A pool can run it
when its accelerator family runs CUDA code as is, or when the script's verdict on the pool's target is
`runs as is` (port off) or not `needs the listed manual changes` (port auto).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from suanli.port.engine import Sources, TargetPort, Verdict, port, read_sources, write_ported
from suanli.port.rewrite import Action
from suanli.port.support import support_matrix
from suanli.spec.cluster import Cluster
from suanli.spec.errors import SpecError
from suanli.spec.job import JobSpec

PORT_DIR = ".suanli-port"
_MANUAL_SHOWN = 3


@dataclass(frozen=True)
class PoolJudgement:
    pool: str
    target: str | None  # None: the pool runs CUDA code as is
    verdict: Verdict
    runnable: bool
    port: TargetPort | None

    def reason(self) -> str:
        """One clause: why the pool cannot run the script (its first manual findings)."""
        if self.port is None or self.runnable:
            return ""
        manual = [f for f in self.port.findings if f.action is Action.MANUAL]
        shown = "; ".join(f"{f.file}:{f.line} {f.what} ({f.detail})" for f in manual[:_MANUAL_SHOWN])
        more = f"; and {len(manual) - _MANUAL_SHOWN} more" if len(manual) > _MANUAL_SHOWN else ""
        needs = shown + more if manual else "needs the rewrite (set port: auto)"
        return f"{self.pool} ({self.target}): {needs}"


def script_sources(workdir: Path, script: str) -> Sources:
    """The working folder's Python files (the script's modules move with it), the script first."""
    path = workdir / script
    if not path.is_file():
        raise SpecError(f"script: {path}: file not found")
    sources = read_sources([workdir])
    name = path.resolve().relative_to(workdir.resolve()).as_posix()
    modules = {name: sources.modules[name], **sources.modules}
    return Sources(sources.root, modules, sources.kernels)


def judge_pools(sources: Sources, pool_families: dict[str, str | None], auto: bool) -> list[PoolJudgement]:
    """One judgement per pool (pool -> accelerator family; None for a CPU pool)."""
    matrix = support_matrix()
    ported: dict[str, TargetPort] = {}
    judgements = []
    for pool, family in pool_families.items():
        target = matrix.target_for_family(family)
        if target is None:
            judgements.append(PoolJudgement(pool, None, Verdict.AS_IS, True, None))
            continue
        if target.name not in ported:
            ported[target.name] = port(sources, target, matrix)
        result = ported[target.name]
        runnable = result.verdict is Verdict.AS_IS or (auto and result.verdict is Verdict.AFTER_REWRITE)
        judgements.append(PoolJudgement(pool, target.name, result.verdict, runnable, result))
    return judgements


def refusal(script: str, judgements: list[PoolJudgement]) -> SpecError:
    """The one-line refusal when no pool can run the script, with each pool's reason."""
    reasons = " | ".join(j.reason() for j in judgements)
    return SpecError(f"script: {script} cannot run on any pool it fits: {reasons}")


def write_copies(judgements: list[PoolJudgement], workdir: Path) -> dict[str, Path]:
    """Write the ported tree of every runnable target under `workdir/.suanli-port/<target>/`;
    the folder each pool runs from (the working folder itself where nothing changed)."""
    folders: dict[str, Path] = {}
    for judgement in judgements:
        if not judgement.runnable:
            continue
        if judgement.port is None or judgement.verdict is Verdict.AS_IS:
            folders[judgement.pool] = Path(".")
            continue
        folder = Path(PORT_DIR) / judgement.port.target.name
        write_ported(judgement.port, workdir / folder)
        folders[judgement.pool] = folder
    return folders


def script_command(script: str, folders: dict[str, Path]) -> str:
    """`python SCRIPT`, run from the copy of the pool the job lands on (the executor exports
    SUANLI_POOL); the job keeps its working folder, so its data paths still resolve."""
    ported = {pool: folder for pool, folder in folders.items() if folder != Path(".")}
    run = f"python {shlex.quote(script)}"
    if not ported:
        return run
    cases = " ".join(
        f"{shlex.quote(pool)}) python {shlex.quote(str(folder / script))} ;;"
        for pool, folder in ported.items()
    )
    return f'case "$SUANLI_POOL" in {cases} *) {run} ;; esac'


def runnable_pools(
    job: JobSpec, cluster: Cluster, pools: Iterable[str]
) -> tuple[list[str], list[PoolJudgement]]:
    """The pools (of `pools`) that can run the job's script, and every pool's judgement; all pools
    when the job names no script."""
    ordered = list(dict.fromkeys(pools))
    if job.script is None:
        return ordered, []
    sources = script_sources(Path(job.workdir or "."), job.script)
    families = {pool: (a.family if (a := cluster.accelerator_of(pool)) else None) for pool in ordered}
    judgements = judge_pools(sources, families, auto=job.port == "auto")
    return [j.pool for j in judgements if j.runnable], judgements


def admit_script(job: JobSpec, cluster: Cluster, pools: Iterable[str]) -> tuple[list[str], str | None]:
    """At admission: the pools that can run the job's script (SpecError with each pool's reason when
    none can), the ported copies written under the working folder, and the command that runs the
    granted pool's copy (None when the job names no script)."""
    if job.script is None:
        return list(pools), None
    kept, judgements = runnable_pools(job, cluster, pools)
    if not kept:
        raise refusal(job.script, judgements)
    runnable = [j for j in judgements if j.runnable]
    folders = write_copies(runnable, Path(job.workdir or ".")) if job.port == "auto" else {}
    return kept, script_command(job.script, folders)
