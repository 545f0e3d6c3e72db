"""The Task screen's import infers what it can: a placeholder task takes its labels (or its kind) from the
imported answers and says so in one line; answers outside configured labels are refused with their lines."""
import pytest
from textual.widgets import Input, Select

from workbench import task_ready, wait_for
from stillroom.core import records
from stillroom.core.project import Project
from stillroom.tui.app import make_app

SIZE = (120, 40)
pytestmark = pytest.mark.anyio


def recorded_notices(app) -> list[str]:
    """The app's notifications from now on, still shown as usual."""
    shown, notify = [], app.notify

    def record(message, *args, **kwargs):
        shown.append(str(message))
        return notify(message, *args, **kwargs)
    app.notify = record
    return shown


async def import_file(pilot, app, path) -> None:
    """Once the Task screen is ready, import `path` through its dialog."""
    await wait_for(pilot, lambda: task_ready(app))
    await pilot.press("i")
    app.screen.query_one("#path", Input).value = str(path)
    await pilot.press("enter")


async def test_import_sets_placeholder_labels_from_the_answers(tmp_path):
    project = Project.create(tmp_path / "reviews")
    source = tmp_path / "reviews.csv"          # columns text,label: found by name
    source.write_text("text,label\n" + "".join(f"review {i} of the film,{('positive', 'negative')[i % 2]}\n"
                                               for i in range(6)))
    app = make_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        shown = recorded_notices(app)
        await import_file(pilot, app, source)
        await wait_for(pilot, lambda: any(m.startswith("Labels set") for m in shown))
        assert "Labels set from the answers: positive, negative; f edits the task." in shown
        assert "Imported 6 example(s) from reviews.csv (columns text → label)." in shown
        assert app.screen.query_one("#labels", Input).value == "positive, negative"
        assert "positive" in str(app.screen.query_one("#chips").render())
        await pilot.press("ctrl+q")
    project = Project.open(project.root)
    assert project.config.task.labels == ["positive", "negative"]
    assert [records.answer_text(r) for r in project.all_seeds()][:2] == ["positive", "negative"]


async def test_import_of_free_answers_guesses_the_kind(tmp_path):
    project = Project.create(tmp_path / "facts")
    source = tmp_path / "facts.csv"
    source.write_text("question,answer\nWho wrote Hamlet?,William Shakespeare wrote it\n"
                      "Capital of France?,Paris is the capital\nWhat is 2+2?,It makes four\n")
    app = make_app(project.root)
    async with app.run_test(size=SIZE) as pilot:
        shown = recorded_notices(app)
        await import_file(pilot, app, source)
        await wait_for(pilot, lambda: any(m.startswith("Task kind guessed: qa") for m in shown))
        assert app.screen.query_one("#type", Select).value == "qa"
        assert not app.screen.query_one("#labels", Input).display
        await pilot.press("ctrl+q")
    assert Project.open(project.root).config.task.type == "qa"


async def test_import_refuses_answers_outside_the_labels(demo, tmp_path):
    source = tmp_path / "tickets.csv"
    source.write_text("text,label\nmy card was charged twice,billing\nI want my money back,refund\n")
    before = demo.seeds_path.read_bytes()
    app = make_app(demo.root)
    async with app.run_test(size=SIZE) as pilot:
        await import_file(pilot, app, source)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ErrorDialog" and app.screen.query("#cause"))
        assert "tickets.csv: line 3: answers not among the labels [billing, shipping, technical, account]: " \
               "'refund'" in str(app.screen.query_one("#cause").render())
        await pilot.press("escape")
        assert "Seeds (24)" in str(app.screen.query_one("#tabs").get_tab("seeds-tab").label)
        await pilot.press("ctrl+q")
    assert demo.seeds_path.read_bytes() == before
