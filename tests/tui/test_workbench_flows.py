"""The workbench driven as a user would, with Pilot: one test per screen's main flow."""
import json
import os
import subprocess
import sys

import pytest
from textual.widgets import Input, TextArea

from workbench import MARKUP_TEXT, open_screen, start_generation, synthetic_rows, task_ready, wait_for
from stillroom.core import records
from stillroom.core.lock import ProjectLock
from stillroom.core.project import Project
from stillroom.tui import settings
from stillroom.tui.app import make_app

SIZE = (120, 40)
pytestmark = pytest.mark.anyio


async def test_create_project_from_projects_screen(tmp_path):
    app = make_app()
    target = tmp_path / "new-task"
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "projects"
        await pilot.press("n")
        dialog = app.screen
        dialog.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: task_ready(app))
        assert app.workbench.project.root == target
        assert (target / "stillroom.toml").exists() and ProjectLock(target).holder()["pid"] == os.getpid()
        await pilot.press("ctrl+q")
    assert ProjectLock(target).holder() == {}
    assert settings.recent_projects()[0]["path"] == str(target.resolve())


async def test_add_edit_delete_undo_seed(demo):
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("a")
        form = app.screen
        form.query_one("#user", TextArea).text = "My parcel never came"
        form.query_one("#assistant", TextArea).text = "parcels"            # not a label
        await pilot.pause()
        assert "not in the label set" in str(form.query_one("#problem").render())
        await pilot.press("ctrl+s")
        assert app.screen is form                                          # refused
        form.query_one("#assistant", TextArea).text = "shipping"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(demo.all_seeds()) == 25)
        assert records.user_text(demo.all_seeds()[-1]) == "My parcel never came"
        await pilot.press("e")
        app.screen.query_one("#user", TextArea).text = "My parcel never arrived"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: records.user_text(demo.all_seeds()[-1]) == "My parcel never arrived")
        await pilot.press("d")
        await wait_for(pilot, lambda: len(demo.all_seeds()) == 24)
        await pilot.press("u")
        await wait_for(pilot, lambda: len(demo.all_seeds()) == 25)
        await pilot.press("ctrl+q")


async def test_import_file_into_seeds(demo, tmp_path):
    source = tmp_path / "more.jsonl"
    source.write_text("\n".join(json.dumps({"instruction": f"Where is parcel {i}?", "output": "shipping"})
                                for i in range(3)) + "\n")
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("i")
        app.screen.query_one("#path", Input).value = str(source)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(demo.all_seeds()) == 27)
        assert "Seeds (27)" in str(app.screen.query_one("#tabs").get_tab("seeds-tab").label)
        await pilot.press("ctrl+q")


async def test_task_edit_is_saved_on_quit(demo):
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        app.screen.query_one("#description", TextArea).text = "Route tickets. Be brief."
        await pilot.press("ctrl+q")                 # before the autosave timer fires
    assert Project.open(demo.root).config.task.description == "Route tickets. Be brief."


async def test_invalid_task_edit_asks_before_quitting(demo):
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        app.screen.query_one("#labels", Input).value = "billing"        # one label is not enough
        await open_screen(pilot, app, "ctrl+q", "ConfirmDialog")
        await pilot.press("n")
        assert app.is_running
        app.screen.query_one("#labels", Input).value = "billing, shipping, technical, account"
        await pilot.press("ctrl+q")
    assert Project.open(demo.root).config.task.labels == ["billing", "shipping", "technical", "account"]


async def test_generation_streams_and_counts(demo):
    app = make_app(demo.root, teacher_factory="fakes:fake_teacher")
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_generation(pilot, app, 12)
        await wait_for(pilot, lambda: not app.workbench.generating and screen.state == "done", timeout=60)
        assert screen.kept == 12
        counters = str(screen.query_one("#counters").render())
        assert "12" in counters
        assert "Ticket" in screen.query_one("#stream").text
        # the last-kept panel shows the last row the generation kept, as written to the project
        last = [r for r in app.workbench.project.synthetic() if r["status"] == "kept"][-1]
        assert screen.last_kept is not None and screen.last_kept["id"] == last["id"]
        panel = str(screen.query_one("#last-kept").render())
        assert last["id"] in panel and " ".join(records.user_text(last).split()) in panel
        await pilot.press("3")                       # review sees the new rows
        await wait_for(pilot, lambda: app.screen.rs is not None)
        assert app.screen.rs.counts()["kept"] == 12
        await pilot.press("ctrl+q")
    assert sum(r["status"] == "kept" for r in Project.open(demo.root).synthetic()) == 12


async def test_pause_and_resume_generation(demo):
    app = make_app(demo.root, teacher_factory="fakes:slow_fake_teacher")
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_generation(pilot, app, 40)
        await wait_for(pilot, lambda: screen.kept >= 2, timeout=60)
        await pilot.press("1")                       # the UI stays usable while it runs
        assert app.current_mode == "task" and app.workbench.generating
        await pilot.press("2", "p")
        await wait_for(pilot, lambda: not app.workbench.generating, timeout=60)
        assert screen.state == "paused" and screen.kept < 40
        await pilot.press("ctrl+q")
    rows = Project.open(demo.root).synthetic()
    assert len({r["id"] for r in rows}) == len(rows)


async def test_review_prune_keep_undo_on_disk(demo_with_rows):
    project = demo_with_rows
    app = make_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.rs is not None)
        await pilot.press("x", "x")                  # prune the first two rows
        await wait_for(pilot, lambda: [r["status"] for r in Project.open(project.root).synthetic()][:2]
                       == ["pruned", "pruned"])
        await pilot.press("u")
        await wait_for(pilot, lambda: Project.open(project.root).synthetic()[1]["status"] == "kept")
        await pilot.press("slash")
        await pilot.press(*"label:shipping status:kept")
        await pilot.press("enter")
        await pilot.pause(0.3)
        shown = len(screen.query_one("#rows").view)
        assert shown and all(screen.rs.entries[i].label == "shipping" for i in screen.query_one("#rows").view)
        await pilot.press("X")
        await pilot.press("ctrl+q")
    rows = Project.open(project.root).synthetic()
    assert not any(r["status"] == "kept" and records.answer_text(r) == "shipping" for r in rows)
    assert rows[0]["status"] == "pruned"


async def test_markup_in_rows_renders_literally(demo):
    demo.save_seeds(demo.all_seeds()[:3] + [records.make_row(MARKUP_TEXT, "billing")])
    demo.save_synthetic(synthetic_rows(6))
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        table = app.screen.query_one("#seeds")
        table.move_cursor(row=3)
        await pilot.pause()
        detail = app.screen.query_one("#detail").render()
        assert MARKUP_TEXT in str(detail)
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.rs is not None)
        rows_widget = screen.query_one("#rows")
        rows_widget.cursor = 3
        await pilot.pause()
        assert MARKUP_TEXT in str(screen.query_one("#detail").render())
        line = "".join(segment.text for segment in rows_widget.render_line(3))
        assert "Refund [bold red]now" in line
        await pilot.press("ctrl+q")


async def test_engine_error_arrives_as_dialog(demo):
    app = make_app(demo.root, teacher_factory="fakes:broken_teacher")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("2", "s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ErrorDialog" and app.screen.query("#cause"),
                       timeout=60)
        assert "model not found" in str(app.screen.query_one("#cause").render())
        assert "gguf" in str(app.screen.query_one("#remedy").render())
        await pilot.press("escape")
        assert app.screen_for("generate").state == "failed"
        await pilot.press("ctrl+q")


async def test_help_palette_and_placeholder_screens(demo):
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpDialog"
        await pilot.press("escape", "4")
        assert app.current_mode == "train"
        await pilot.press("ctrl+p")
        await pilot.press(*"Review")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "review")
        await pilot.press("ctrl+q")


async def test_second_app_on_same_project_is_refused(demo):
    demo.lock("another stillroom").acquire()
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ErrorDialog")
        assert "already open" in str(app.screen.query_one("#cause").render())
        assert app.workbench.project is None
        await pilot.press("escape", "ctrl+q")


def test_first_frame_imports_nothing_heavy(demo):
    code = f"""
import asyncio, sys
from stillroom.tui.app import make_app
async def main():
    app = make_app({str(demo.root)!r})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert app.current_mode == "task", app.current_mode
        await pilot.press("2", "3")
        await pilot.pause(0.3)
        await pilot.press("ctrl+q")
asyncio.run(main())
heavy = [m for m in ("torch", "transformers", "llama_cpp", "peft") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


async def test_review_changes_during_generation_wait_and_keep_new_rows(demo_with_rows):
    project = demo_with_rows
    app = make_app(project.root, teacher_factory="fakes:slower_fake_teacher")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("3")
        review = app.screen
        await wait_for(pilot, lambda: review.rs is not None)
        await pilot.press("2")
        app.screen.query_one("#target", Input).value = "500"
        await pilot.press("s")
        await wait_for(pilot, lambda: app.workbench.generating and len(review.rs) > 30, timeout=60)
        await pilot.press("3", "home", "x")
        assert app.workbench.generating and review.rs.dirty
        assert Project.open(project.root).synthetic()[0]["status"] == "kept"    # not while appending
        await pilot.press("2", "p")
        await wait_for(pilot, lambda: not app.workbench.generating, timeout=60)
        await wait_for(pilot, lambda: not review.rs.dirty)
        await pilot.press("ctrl+q")
    rows = Project.open(project.root).synthetic()
    assert rows[0]["status"] == "pruned"
    assert len(rows) == len(review.rs) and len(rows) > 31
    assert len({r["id"] for r in rows}) == len(rows)


async def test_the_stream_keeps_interleaved_candidates_apart():
    from textual.app import App
    from stillroom.tui.widgets.stream_view import StreamView

    class Host(App):
        def compose(self):
            yield StreamView()
    app = Host()
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(StreamView)
        view.begin(3, "billing")
        view.begin(4, "shipping")
        view.append_chunk("parcel late", "input", 4)
        view.append_chunk("refund please", "input", 3)
        view.append_chunk("billing", "answer", 3)
        view.verdict(True, "", 3)
        view.verdict(False, "near-dup", 4)
        await pilot.pause()
        assert view.text.splitlines() == ["✓ #3  → billing  kept", "refund please  ⇒ billing",
                                          "✗ #4  → shipping  rejected: near-dup", "parcel late"]
        view.begin(5, "account")
        view.settle("not needed")       # the run reached its target first
        await pilot.pause()
        assert view.text.splitlines()[-1] == "· #5  → account  not needed"


async def test_quit_with_an_open_edit_asks_first(demo):
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await pilot.press("e")
        app.screen.query_one("#user", TextArea).text = "changed but not saved"
        await open_screen(pilot, app, "ctrl+q", "ConfirmDialog")
        await pilot.press("n")                       # go back to the form
        assert type(app.screen).__name__ == "RowFormDialog"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: records.user_text(demo.all_seeds()[0]) == "changed but not saved")
        await pilot.press("ctrl+q")
