"""Job dependencies as Slurm's `sbatch --dependency` writes them: `afterok:ID[:ID]`, `afternotok:…`,
`afterany:…` and `singleton`, joined by `,` (all must hold). A dependency that can no longer be met
(an `afterok` parent failed) cancels the job, as Slurm does with `kill_invalid_depend`, with the
reason `DependencyNeverSatisfied`."""

from __future__ import annotations

from dataclasses import dataclass

from suanli.spec.errors import SpecError

KINDS = ("afterok", "afternotok", "afterany", "singleton")
NEVER = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class Dependency:
    kind: str
    job_ids: tuple[int, ...] = ()


def parse_dependency(text: str) -> list[Dependency]:
    """`afterok:3:4,afterany:5` → its parts; a malformed part is a one-line SpecError."""
    parts = []
    for item in text.split(","):
        kind, *ids = item.strip().split(":")
        if kind not in KINDS:
            raise SpecError(f"dependency: {item!r}: unknown type (one of {', '.join(KINDS)})")
        if (kind == "singleton") != (not ids) or not all(i.isdigit() and int(i) > 0 for i in ids):
            form = "singleton" if kind == "singleton" else f"{kind}:ID[:ID]"
            raise SpecError(f"dependency: {item!r}: expected {form}")
        parts.append(Dependency(kind, tuple(int(i) for i in ids)))
    return parts


def dependency_status(
    parts: list[Dependency], parent_states: dict[int, str], earlier_namesake_active: bool
) -> tuple[str, str]:
    """("ready" | "waiting" | "never", why) from the parents' states now (a parent no longer in the
    store counts as never satisfiable) and whether an earlier job of the same name (and user) is
    still pending or running (what `singleton` waits for)."""
    waiting = ""
    for part in parts:
        if part.kind == "singleton":
            waiting = waiting or (
                "singleton: an earlier job of this name is active" if earlier_namesake_active else ""
            )
            continue
        for parent in part.job_ids:
            state = parent_states.get(parent)
            if state is None:
                return "never", f"{NEVER}: job {parent} no longer exists"
            if state in {"pending", "starting", "running"}:
                waiting = waiting or f"{part.kind}: job {parent} is {state}"
            elif part.kind == "afterok" and state != "succeeded":
                return "never", f"{NEVER}: afterok parent job {parent} {state}"
            elif part.kind == "afternotok" and state == "succeeded":
                return "never", f"{NEVER}: afternotok parent job {parent} succeeded"
    return ("waiting", waiting) if waiting else ("ready", "")
