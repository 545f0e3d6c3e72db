import json
import os
import subprocess
import sys
import time

import pytest

from stillroom.core.errors import ProjectLocked
from stillroom.core.fsio import JsonlAppender, atomic_write_text, repair_torn_tail
from stillroom.core.lock import ProjectLock, process_alive


def test_repair_torn_tail(tmp_path):
    path = tmp_path / "rows.jsonl"
    with JsonlAppender(path) as out:
        out.append({"id": "a"})
        out.append({"id": "b"})
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"id": "c", "mess')
    assert repair_torn_tail(path) > 0
    assert path.read_bytes() == whole
    assert repair_torn_tail(path) == 0
    # a complete-looking line that is not JSON is torn too
    path.write_bytes(whole + b'{"id": \n')
    repair_torn_tail(path)
    assert path.read_bytes() == whole


def test_repair_keeps_single_good_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n')
    assert repair_torn_tail(path) == 0
    path.write_text('{"a": ')
    repair_torn_tail(path)
    assert path.read_text() == ""


def test_atomic_write_leaves_no_temp(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_second_process_refused_and_named(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from stillroom.core.lock import ProjectLock; "
        f"ProjectLock({str(tmp_path)!r}, 'stillroom generate').acquire(); print('held', flush=True); "
        "time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectLocked) as info:
            ProjectLock(tmp_path).acquire()
        assert f"process {holder.pid} (stillroom generate)" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock record is stale and is taken over
    assert json.loads((tmp_path / ".stillroom.lock").read_text())["pid"] == holder.pid
    lock = ProjectLock(tmp_path).acquire()
    assert json.loads((tmp_path / ".stillroom.lock").read_text())["pid"] == os.getpid()
    with pytest.raises(ProjectLocked):           # a second holder in the same process is refused too
        ProjectLock(tmp_path).acquire()
    lock.release()
    assert ProjectLock(tmp_path).holder() == {}


def test_racing_takeovers_of_a_stale_lock_leave_one_holder(tmp_path):
    (tmp_path / ".stillroom.lock").write_text(json.dumps({"pid": 999999, "host": __import__("socket").gethostname()}))
    script = ("import sys, time; from stillroom.core.lock import ProjectLock; from stillroom.core.errors import "
              "ProjectLocked\ntry:\n    ProjectLock(sys.argv[1]).acquire(); print('got', flush=True); time.sleep(3)\n"
              "except ProjectLocked:\n    print('refused', flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    outcomes = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.wait()
    assert outcomes.count("got") == 1, outcomes


def test_process_alive():
    import socket
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    assert process_alive(os.getpid())
    assert not process_alive(dead)
    assert not process_alive(0)
    assert process_alive(dead, "another-host")            # cannot tell from here: assumed alive
    assert not process_alive(dead, socket.gethostname())


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="zombies are read from /proc")
def test_a_zombie_is_not_alive():
    # A killed child nobody has reaped yet (as when its parent dies too, in a container whose PID 1
    # never reaps) still answers kill(pid, 0); it must count as dead, or its run stays "running".
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while process_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not process_alive(child.pid)
        os.kill(child.pid, 0)                      # still there, unreaped: the zombie rule decided
    finally:
        child.kill()
        child.wait()
