"""Compare and Chat screens driven by Pilot: filters, the side-by-side dialog, evaluation, streaming chat."""
import pytest
from textual.widgets import DataTable

from modelscreens import MARKUP, TEACHER
from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def open_on_project(pilot, key: str, cls_name: str):
    """Wait for the project to open, then open a screen."""
    await wait_for(pilot, lambda: pilot.app.workbench.project is not None)
    return await open_screen(pilot, pilot.app, key, cls_name)


async def test_compare_filters_and_side_by_side(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_on_project(pilot, "5", "CompareScreen")
        table = screen.query_one("#cmp-table", DataTable)
        assert table.row_count == 12
        # the idle state line is there from the first frame, not only after a clock tick
        assert str(screen.query_one("#cmp-state").render()) == "e evaluates again"
        headline = str(screen.query_one("#cmp-headline").render())
        assert "gap closed" in headline and "86%" in headline
        # modelscreens.write_eval: the tuned student is wrong where i % 3 == 0, the teacher where i % 5 == 0
        await pilot.press("w")
        assert [r["index"] for r in screen.shown] == [0, 3, 6, 9] and table.row_count == 4
        assert all(r["outputs"]["tuned"]["score"] < 0.5 for r in screen.shown)
        await pilot.press("t")                   # the teacher right where the student is wrong
        assert [r["index"] for r in screen.shown] == [3, 6, 9] and table.row_count == 3
        assert all(r["outputs"]["teacher"]["score"] >= 0.5 and r["outputs"]["tuned"]["score"] < 0.5
                   for r in screen.shown)
        await pilot.press("d")                   # the two answer differently
        assert [r["index"] for r in screen.shown] == [0, 3, 5, 6, 9, 10] and table.row_count == 6
        assert all(r["outputs"]["tuned"]["text"] != r["outputs"]["teacher"]["text"] for r in screen.shown)
        await pilot.press("a")
        assert table.row_count == 12
        # markup in model/test text renders literally
        await pilot.press("down", "down")
        assert "[bold red]" in str(screen.query_one("#cmp-preview").render())
        await open_screen(pilot, app, "enter", "AnswersDialog")
        dialog = app.screen
        assert "[link=https://example.com]" in str(dialog.query_one("#answers-input").render())
        await pilot.press("down")
        assert dialog.index == 3
        await open_screen(pilot, app, "escape", "CompareScreen")


async def test_evaluate_a_run_from_the_screen(project_with_run, tiny):
    from modelscreens import add_run
    add_run(project_with_run, tiny, "20260102-090000-lora", evaluated=False)
    config = project_with_run.config
    config.evaluation.baselines = ["few-shot", "scored"]     # the seed-only student's 40 steps: tests/core
    project_with_run.save_config(config)
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_on_project(pilot, "5", "CompareScreen")
        assert screen.run_id == "20260102-090000-lora" or screen.run_id == "20260101-120000-lora"
        screen.show_run("20260102-090000-lora")
        assert screen.result is None
        await pilot.press("e")
        headline = screen.query_one("#cmp-headline")
        if screen.running:
            assert "Evaluating run 20260102-090000-lora" in str(headline.render())
        await wait_for(pilot, lambda: screen.result is not None and not screen.running, timeout=90)
        assert "Evaluating" not in str(headline.render())
        table = screen.query_one("#cmp-table", DataTable)
        assert table.row_count == min(6, len(project_with_run.tests()))
        assert (project_with_run.runs_dir / "20260102-090000-lora" / "eval" / "predictions.jsonl").exists()
        await pilot.press("w")
        assert table.row_count == len(screen.shown)


async def test_chat_streams_both_columns(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_on_project(pilot, "6", "ChatScreen")
        teacher = screen.query_one("#col-teacher")
        tuned = screen.query_one("#col-tuned")
        await pilot.press("ctrl+b")
        await pilot.click("#prompt")
        for ch in "hello":
            await pilot.press(ch)
        chunks = []
        original = teacher.append

        def counting(text):              # each call is a piece of the streamed answer arriving
            chunks.append(text)
            original(text)
        teacher.append = counting
        await pilot.press("enter")
        import time
        deadline = time.monotonic() + 60
        while screen.streaming and time.monotonic() < deadline:
            await pilot.pause(0.02)
        assert not screen.streaming
        assert len(chunks) >= 2, chunks
        assert teacher.answer.strip()
        assert tuned.turns and tuned.turns[-1][0] == "hello"
        assert "ttft" in teacher.stats_text and "tok/s" in teacher.stats_text
        assert "ttft" in tuned.stats_text or "no tokens" in tuned.stats_text
        base = screen.query_one("#col-base")
        assert base.turns and base.display
        # a second message keeps the history
        for ch in MARKUP[:20]:
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.streaming, timeout=60)
        assert len(screen.conversation) == 2
        assert len(teacher.turns) == 2
        await pilot.press("ctrl+n")
        assert len(screen.conversation) == 0 and not teacher.turns
