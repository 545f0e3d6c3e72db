"""Chat with a teacher whose process dies with SIGSEGV (as a crash in llama.cpp would): the teacher's
column fails with a dialog naming the signal, the student still answers, and the next message starts a
new teacher process."""
import pytest

from workbench import open_screen, wait_for
from stillroom.tui.app import make_app




async def send(pilot, screen, text):
    await pilot.click("#prompt")
    for ch in text:
        await pilot.press(ch)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not screen.streaming, timeout=120)


@pytest.mark.anyio
async def test_a_teacher_crash_fails_its_column_only(project_with_run, monkeypatch):
    app = make_app(project_with_run.root, teacher_factory="fakes:teacher_crashing_at_once")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, app, "6", "ChatScreen")
        screen = app.screen
        teacher, tuned = screen.query_one("#col-teacher"), screen.query_one("#col-tuned")
        await send(pilot, screen, "hello")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ErrorDialog" and app.screen.query("#cause"), timeout=30)
        assert "the teacher process crashed (SIGSEGV)" in str(app.screen.query_one("#cause").render())
        assert "cpu_repack" in str(app.screen.query_one("#remedy").render())
        await pilot.press("escape")
        assert app.is_running and app.screen is screen
        assert teacher.stats_text == "failed"
        assert tuned.turns and ("ttft" in tuned.stats_text or "no tokens" in tuned.stats_text)
        monkeypatch.setenv("STILLROOM_TEST_NO_CRASH", "1")       # the next teacher process is sound
        await send(pilot, screen, "again")
        assert teacher.answer.strip() and "ttft" in teacher.stats_text
        assert len(screen.conversation) == 2
        await pilot.press("ctrl+q")


@pytest.mark.parametrize("factory, code", [("modelscreens:teacher_factory", 0), ("fakes:teacher_crashing_at_once", 1)])
def test_cli_chat_answers_in_jobs_and_reports_a_teacher_crash(project_with_run, monkeypatch, capsys, factory, code):
    from stillroom.core import job_kinds
    from stillroom.tui.cli import main
    make_job = job_kinds.chat_job
    monkeypatch.setattr(job_kinds, "chat_job", lambda root, group, **kw: make_job(
        root, group, **{**kw, "teacher_factory": factory if group == "teacher" else None}))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["chat", str(project_with_run.root), "my parcel never arrived", "--base"]) == code
    out = capsys.readouterr().out
    assert "tuned student" in out and "base student" in out
    if code:
        assert "the teacher process crashed (SIGSEGV)" in " ".join(out.split())
    else:
        assert "Ticket" in out or "billing" in out or "shipping" in out      # the fake teacher's words
