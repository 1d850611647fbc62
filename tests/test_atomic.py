"""Atomic outputs: the final name holds either nothing, the old file, or the complete new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.atomic import atomic_path


def test_file_appears_only_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "map.txt"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.suffix == ".txt" and tmp != final
        assert not tmp.exists()
        tmp.write_text("partial")
        assert not final.exists(), "nothing under the final name while writing"
    assert final.read_text() == "partial"
    assert [p.name for p in final.parent.iterdir()] == ["map.txt"]


def test_error_removes_the_temporary_and_keeps_the_old_file(tmp_path: Path) -> None:
    final = tmp_path / "labels.tif"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_keyboard_interrupt_cleans_up(tmp_path: Path) -> None:
    final = tmp_path / "x.npy"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"123")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_replaces_an_existing_file_and_folder(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("1")
    with atomic_path(f) as tmp:
        tmp.write_text("2")
    assert f.read_text() == "2"
    d = tmp_path / "product.SAFE"
    (d / "old").mkdir(parents=True)
    with atomic_path(d) as tmp:
        (tmp / "new").mkdir(parents=True)
    assert [p.name for p in d.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "product.SAFE"]


def test_nothing_written_leaves_nothing(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "never.tif"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_double_suffix_kept(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.tar.gz") as tmp:
        assert tmp.name.endswith(".tar.gz")
        tmp.write_bytes(b"")
    assert (tmp_path / "a.tar.gz").exists()
