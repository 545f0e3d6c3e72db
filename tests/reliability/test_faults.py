"""Disk full, read-only folders and out-of-memory give a clear error and lose nothing already saved."""
import errno
import os

import pytest

from stillroom.core import fsio
from stillroom.core.errors import ModelError, StillroomError
from stillroom.core.fsio import JsonlAppender, atomic_write_text
from stillroom.tui.cli import main
from projects import make_project


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


def test_disk_full_during_atomic_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "seeds.jsonl"
    atomic_write_text(path, "old\n")
    monkeypatch.setattr(fsio.os, "fsync", _raise(errno.ENOSPC))
    with pytest.raises(StillroomError, match=r"seeds.jsonl: disk full while saving; nothing already saved"):
        atomic_write_text(path, "new\n" * 1000)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["seeds.jsonl"]


def test_disk_full_during_append_keeps_earlier_rows(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    with JsonlAppender(path) as out:
        out.append({"id": 1})
        monkeypatch.setattr(fsio.os, "fsync", _raise(errno.ENOSPC))
        with pytest.raises(StillroomError, match="disk full while appending a row"):
            out.append({"id": 2})
    monkeypatch.undo()
    fsio.repair_torn_tail(path)
    assert path.read_text().splitlines()[0] == '{"id":1}'


def test_read_only_project_gives_clear_cli_error(tmp_path, monkeypatch, capsys):
    project = make_project(tmp_path)
    before = project.seeds_path.read_bytes()
    monkeypatch.setattr(fsio.tempfile, "mkstemp", _raise(errno.EROFS))
    csv = tmp_path / "rows.csv"
    csv.write_text("input,output\nMy card was charged twice,billing\n")
    code = main(["import", str(csv), "--into", str(project.root)])
    err = capsys.readouterr().err
    assert code == 2
    assert "seeds.jsonl: cannot write (Read-only file system) while saving; nothing already saved was changed" \
        in err
    assert err.count("\n") == 1
    assert project.seeds_path.read_bytes() == before


def test_out_of_memory_while_loading_teacher(tmp_path, monkeypatch):
    import llama_cpp
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.models import bundled_path

    def oom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(llama_cpp, "Llama", oom)
    with pytest.raises(ModelError) as info:
        LlamaCppModel(bundled_path("smollm2-135m-instruct"))
    assert "out of memory while loading the model" in info.value.one_line()
    assert "smaller model" in info.value.one_line()
