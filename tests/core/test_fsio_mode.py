import os
import stat

from stillroom.core.fsio import atomic_write_text


def test_atomic_write_keeps_usual_permissions(tmp_path):
    fresh = tmp_path / "new.txt"
    atomic_write_text(fresh, "a")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask
    shared = tmp_path / "shared.txt"
    shared.write_text("x")
    shared.chmod(0o640)
    atomic_write_text(shared, "y")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640 and shared.read_text() == "y"
