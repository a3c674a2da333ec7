"""Job arrays as Slurm's `sbatch --array` writes them: `0-31`, `0-15:4` (a step), `1,3,5`, and `%N`
at the end to run at most N tasks at once (`0-31%4`)."""

from __future__ import annotations

from suanli.spec.errors import SpecError

MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize: task ids run from 0 to 1000


def parse_array(text: str) -> tuple[list[int], int | None]:
    """`0-31%4` → ([0, …, 31], 4): the task ids in order, and the limit on tasks running at once."""
    spec, _, limit_text = text.partition("%")
    if limit_text and not (limit_text.isdigit() and int(limit_text) > 0):
        raise SpecError(f"array: {text!r}: the limit after % must be a positive whole number")
    task_ids: set[int] = set()
    for item in spec.split(","):
        span, _, step = item.partition(":")
        first, _, last = span.partition("-")
        numbers = [first, last or first, step or "1"]
        if not all(n.isdigit() for n in numbers) or int(numbers[2]) == 0:
            raise SpecError(f"array: {item!r}: expected N, N-M or N-M:STEP")
        start, stop, every = (int(n) for n in numbers)
        if stop < start or stop >= MAX_ARRAY_SIZE:
            raise SpecError(f"array: {item!r}: task ids run from 0 to {MAX_ARRAY_SIZE - 1}, low to high")
        task_ids.update(range(start, stop + 1, every))
    return sorted(task_ids), int(limit_text) if limit_text else None
