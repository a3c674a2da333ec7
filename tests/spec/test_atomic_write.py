"""`spec.io.atomic_write_*`: readers see the old file or the new one, never a part, and nothing is
left behind (the one atomic write the service, the checkpoint storage and the agents share)."""

from __future__ import annotations

import pytest

from suanli.spec.io import atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "address.json"
    atomic_write_text(path, "old")
    atomic_write_bytes(path, b"new \xe7\xae\x97\xe5\x8a\x9b")
    assert path.read_text(encoding="utf-8") == "new 算力"
    assert [p.name for p in path.parent.iterdir()] == ["address.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_text(path, "committed")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "committed"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
