"""Resumable benchmark grids: each cell's metrics go to its own JSON file, so a grid can be split into
shards run side by side (`--shard i/k`), stopped (`--budget-s`) and resumed where it left off."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from suanli.spec.io import atomic_write_text

Cell = TypeVar("Cell")


def add_grid_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--shard", default="0/1", help="i/k: run every k-th cell from the i-th")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting cells after this")
    parser.add_argument("--table", action="store_true", help="print the tables of the cells done")


def run_grid(
    cells: Iterable[Cell],
    args: argparse.Namespace,
    path_of: Callable[[Path, Cell], Path],
    run_cell: Callable[[Cell], dict],
    keys: tuple[str, ...],
) -> None:
    """Run this shard's cells that have no result yet, printing each one's `keys`."""
    args.out.mkdir(parents=True, exist_ok=True)
    index, count = (int(x) for x in args.shard.split("/"))
    started = time.perf_counter()
    for i, cell in enumerate(cells):
        path = path_of(args.out, cell)
        if i % count != index or path.exists():
            continue
        if time.perf_counter() - started > args.budget_s:
            break
        metrics = run_cell(cell)
        atomic_write_text(path, json.dumps(metrics))
        print(path.name, {k: round(float(metrics[k]), 3) for k in keys if k in metrics}, flush=True)
