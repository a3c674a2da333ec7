"""The one way to reach a public dataset: the repo's `datasets/` folder (or a root the user names).

Datasets (published training runs, collective measurements, cluster traces, failure logs) are
evaluation and calibration material: they live at the top of a clone, each folder with its
`SOURCE.md` (source, licence, how it was derived), and are not shipped in the wheel. The root is
`$SUANLI_DATASETS` when set, else `datasets/` beside the installed package (a clone or an editable
install). A file stored compressed (`NAME.xz` / `NAME.gz`) is found and read under its plain name.
"""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

from suanli.spec.errors import DatasetError

ENV_VAR = "SUANLI_DATASETS"
_COMPRESSED_SUFFIXES = (".xz", ".gz")


def datasets_root() -> Path:
    """`$SUANLI_DATASETS`, else `<clone>/datasets`."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "datasets"


def dataset_path(relative: str) -> Path:
    """The file or folder `relative` under the datasets root, possibly stored as `.xz`/`.gz`.

    A miss is one `DatasetError` line naming the dataset and where it was looked for.
    """
    root = datasets_root()
    candidate = root / relative
    if candidate.exists():
        return candidate
    for suffix in _COMPRESSED_SUFFIXES:
        compressed = candidate.with_name(candidate.name + suffix)
        if compressed.exists():
            return compressed
    raise DatasetError(
        f"dataset {relative!r} not found under {root} (run from a clone of Suanli, "
        f"set ${ENV_VAR}, or pass the file's path)"
    )


def read_text(path: str | Path) -> str:
    """The text of a dataset file given by relative name or by path, decompressing `.xz`/`.gz`."""
    resolved = Path(path)
    if not resolved.is_absolute() and not resolved.exists():
        resolved = dataset_path(str(path))
    elif not resolved.exists():
        for suffix in _COMPRESSED_SUFFIXES:
            if resolved.with_name(resolved.name + suffix).exists():
                resolved = resolved.with_name(resolved.name + suffix)
                break
        else:
            raise DatasetError(f"{resolved}: file not found")
    try:
        if resolved.suffix == ".xz":
            return lzma.decompress(resolved.read_bytes()).decode("utf-8")
        if resolved.suffix == ".gz":
            return gzip.decompress(resolved.read_bytes()).decode("utf-8")
        return resolved.read_text(encoding="utf-8")
    except (OSError, lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{resolved}: cannot read ({exc})") from None
