"""The clone is the whole project: every dataset is in `datasets/` with its source and licence, and
no code, test, benchmark or example reaches for a development machine's paths or the folder beside
the repo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from suanli.spec.datasets import dataset_path, datasets_root, read_text
from suanli.spec.errors import DatasetError, SpecError

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"
SCANNED = ("suanli", "tests", "benchmarks", "examples")
# A development machine's work folder, or the reference folder beside the clone. Written with
# character classes so that this file, which is scanned too, never spells a match itself.
MACHINE_PATH = re.compile(r"/wor[k]/|\.\./share[d]\b|\bshare[d]/data\b")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _dataset_folders() -> list[Path]:
    """Folders of datasets/ holding data files directly (not only SOURCE.md or subfolders)."""
    return sorted(
        {p.parent for p in DATASETS.rglob("*") if p.is_file() and p.name != "SOURCE.md"} - {DATASETS}
    )


def _source_of(folder: Path) -> Path | None:
    """The SOURCE.md describing `folder`: its own, or that of the nearest enclosing dataset folder."""
    while folder != DATASETS:
        if (folder / "SOURCE.md").is_file():
            return folder / "SOURCE.md"
        folder = folder.parent
    return None


def test_the_datasets_root_is_the_clones_datasets_folder():
    assert datasets_root().resolve() == DATASETS.resolve()
    assert (DATASETS / "README.md").is_file()


@pytest.mark.parametrize("folder", _dataset_folders(), ids=lambda p: str(p.relative_to(DATASETS)))
def test_every_dataset_folder_names_its_source_and_licence(folder):
    source = _source_of(folder)
    assert source is not None, f"datasets/{folder.relative_to(DATASETS)} has no SOURCE.md"
    text = source.read_text(encoding="utf-8")
    assert re.search(r"\bsource\b", text, re.IGNORECASE), f"{source} names no source"
    assert re.search(r"\blicen[cs]e\b", text, re.IGNORECASE), f"{source} names no licence"


def test_every_top_level_dataset_folder_is_in_the_index():
    index = (DATASETS / "README.md").read_text(encoding="utf-8")
    for folder in sorted(p for p in DATASETS.iterdir() if p.is_dir()):
        assert f"`{folder.name}/" in index, f"datasets/README.md does not list {folder.name}/"


def test_large_files_are_stored_compressed():
    large = [
        p.relative_to(DATASETS)
        for p in DATASETS.rglob("*")
        if p.is_file() and p.suffix not in {".xz", ".gz"} and p.stat().st_size > 200_000
    ]
    assert not large, f"compress with xz: {large}"


def _text_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(REPO).parts):
                files.append(path)
    return files


def test_no_file_reaches_outside_the_clone():
    offenders = []
    for path in _text_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if MACHINE_PATH.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


def test_the_scan_catches_a_machine_path():
    # Assembled at run time so that this file does not match its own scan.
    work_folder, beside = "/" + "work/", "../" + "shared"
    assert MACHINE_PATH.search(f'DEFAULT = Path("{work_folder}main/traces/philly.csv")')
    assert MACHINE_PATH.search(f"python bench.py {beside}/data/training_runs.csv")
    assert MACHINE_PATH.search("see " + "shared/" + "data/README.md")
    assert not MACHINE_PATH.search("datasets/traces/philly/jobs.csv")


def test_a_compressed_dataset_is_read_under_its_plain_name():
    assert dataset_path("traces/philly/jobs.csv").name == "jobs.csv.xz"
    assert read_text("traces/philly/jobs.csv").startswith("timestamp,duration,num_gpus")


def test_a_missing_dataset_is_one_line_naming_it():
    with pytest.raises(DatasetError) as raised:
        dataset_path("traces/nope/jobs.csv")
    message = str(raised.value)
    assert "traces/nope/jobs.csv" in message and "\n" not in message
    assert isinstance(raised.value, SpecError)
