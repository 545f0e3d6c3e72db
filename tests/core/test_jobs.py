"""The job runner: events and results across the process boundary, sessions, stop, and crashes."""
import threading

import pytest

from stillroom.core import events as ev
from stillroom.core.errors import DataError
from stillroom.core.jobs import Job, JobContext, JobCrashed, JobFailed, signal_name


def job(tmp_path, target, args=None, **kwargs):
    return Job(f"job_functions:{target}", args, what="test job", log_path=tmp_path / "job.log", nice=0,
               **kwargs)


def test_one_shot_job_streams_events_and_returns_its_result(tmp_path):
    seen = []
    result = job(tmp_path, "counting", {"n": 3}).run(seen.append)
    assert result == {"n": 3}
    assert [e.message for e in seen] == ["step 0", "step 1", "step 2"]


def test_tokens_arrive_coalesced_and_complete(tmp_path):
    seen = []
    job(tmp_path, "counting", {"n": 0, "tokens": 500}).run(seen.append)
    assert all(isinstance(e, ev.TokenStreamed) for e in seen)
    assert "".join(e.text for e in seen) == "".join(f"t{i} " for i in range(500))
    assert sum(e.tokens for e in seen) == 500
    assert len(seen) < 50          # 500 tokens written in a burst reach the parent in few events


def test_context_merges_a_stream_and_flushes_before_other_events():
    sent = []
    ctx = JobContext(sent.append, interval=60.0)
    ctx.emit(ev.CandidateStarted(0, "billing"))
    for piece in "abc":
        ctx.emit(ev.TokenStreamed(piece, "teacher", "input", 0))
    ctx.emit(ev.TokenStreamed("x", "teacher", "answer", 0))
    ctx.emit(ev.TokenStreamed("y", "teacher", "input", 1, tokens=4))
    ctx.emit(ev.ExampleAccepted({"id": "syn-0"}))
    kinds = [(d["event"], d.get("text"), d.get("index"), d.get("tokens")) for d in sent]
    assert kinds == [("CandidateStarted", None, 0, None), ("TokenStreamed", "abc", 0, 3),
                     ("TokenStreamed", "x", 0, 1),
                     ("TokenStreamed", "y", 1, 4), ("ExampleAccepted", None, None, None)]


def test_session_answers_requests_and_stop_cancels_only_the_current_one(tmp_path):
    with job(tmp_path, "echo_session") as session:
        assert session.call({"a": 1}) == {"echo": {"a": 1}}
        seen = []

        def stop_when_waiting(event):
            seen.append(event)
            threading.Thread(target=session.stop).start()
        assert session.call({"wait": True}, stop_when_waiting) == {"stopped": True}
        assert [e.message for e in seen] == ["waiting"]
        assert session.call({"b": 2}) == {"echo": {"b": 2}}          # the next request is not cancelled
        with pytest.raises(DataError, match="line 3"):                # a user error keeps its class
            session.call({"bad": True})
        assert session.call({"c": 3}) == {"echo": {"c": 3}}          # and the session goes on
    assert session.proc.returncode == 0


def test_a_crash_names_the_signal_and_what_to_try(tmp_path):
    crashing = job(tmp_path, "crashing", crash_hint="try the safe setting")
    seen = []
    with pytest.raises(JobCrashed) as info:
        crashing.run(seen.append)
    assert info.value.signal_name == "SIGSEGV"
    assert str(info.value) == "the test job process crashed (SIGSEGV)"
    assert "try the safe setting" in info.value.remedy and str(tmp_path / "job.log") in info.value.remedy
    assert [e.message for e in seen] == ["step 0", "step 1"]           # what it reported first arrives
    assert "Fatal Python error" in (tmp_path / "job.log").read_text()  # its stack is in the log


def test_a_crashed_session_fails_its_call(tmp_path):
    with job(tmp_path, "echo_session") as session:
        session.call({"a": 1})
        session.kill()
        session.wait(10)
        with pytest.raises(JobCrashed, match="SIGKILL"):
            session.call({"a": 2})


def test_early_exit_and_unexpected_errors(tmp_path):
    with pytest.raises(JobCrashed, match="exit code 3"):
        job(tmp_path, "exiting").run()
    with pytest.raises(JobFailed, match="ZeroDivisionError: not a user error"):
        job(tmp_path, "failing").run()


def test_signal_names():
    assert signal_name(-11) == "SIGSEGV" and signal_name(-9) == "SIGKILL"
    assert signal_name(0) == "" and signal_name(None) == ""


def test_closing_a_session_ends_its_process(tmp_path):
    session = job(tmp_path, "echo_session").start()
    session.call({"a": 1})
    session.close(timeout=20)
    assert session.proc.returncode == 0          # it ended by itself: a kill after the timeout reads -9
