"""SVG snapshots of every screen at 120×40 with fixed data (update with --snapshot-update)."""
import time
from pathlib import Path

import pytest

from workbench import MARKUP_TEXT, synthetic_rows, task_ready, wait_for
from stillroom.core import records
from stillroom.core.project import Project
from stillroom.tui import settings
from stillroom.tui.app import make_app

SIZE = (120, 40)
SHOWN = Path("/tmp/stillroom-snapshots")   # where the pictures say the projects live; nothing is written there


@pytest.fixture(autouse=True)
def only_workbench_screens(monkeypatch):
    """Screens 4-6 stand in as placeholders here: their own snapshots live with their tests, and the
    help screen's content should not change when they gain a key."""
    from stillroom.tui import app as app_module
    mine = {"task", "generate", "review"}
    monkeypatch.setattr(app_module, "SCREENS", [
        spec if spec.mode in mine else app_module.ScreenSpec(spec.key, spec.mode, spec.title, None)
        for spec in app_module.SCREENS])


@pytest.fixture
def root(tmp_path, monkeypatch):
    """This test's folder for projects and the data folder (under pytest's tmp_path)."""
    monkeypatch.setenv("STILLROOM_DATA_DIR", str(tmp_path / "projects" / "data"))
    return tmp_path / "projects"


@pytest.fixture
def fixed_project(root):
    """The demo project with generated rows."""
    project = Project.create(root / "support-routing", demo=True)
    seeds = project.all_seeds()
    seeds[2] = records.make_row(MARKUP_TEXT, "technical", project.config.task.system_prompt)
    project.save_seeds(seeds)
    project.save_synthetic(synthetic_rows(30))
    return project


@pytest.fixture
def paths_shown_under_fixed_folder(root, monkeypatch):
    """The projects screen prints absolute paths: it prints SHOWN in place of this test's folder, so the
    picture is the same on every run while the files stay under tmp_path."""
    from stillroom.core import locations
    from stillroom.tui.screens import projects
    text = projects.Text

    def shown_text(content="", *args, **kwargs):
        return text(content.replace(str(root), str(SHOWN)), *args, **kwargs)

    class ShownLocations:
        def __getattr__(self, name):
            return getattr(locations, name)

        @staticmethod
        def data_dir():
            return SHOWN / locations.data_dir().relative_to(root)

    monkeypatch.setattr(projects, "Text", shown_text)
    monkeypatch.setattr(projects, "locations", ShownLocations())


async def _settle(pilot):
    """Let loaders finish and stop cursors blinking, so the picture is the same on every run."""
    await pilot.app.workers.wait_for_complete()
    for box in pilot.app.screen.query("Input, TextArea"):
        box.cursor_blink = False
    await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()


async def _open(pilot):
    import asyncio
    for _ in range(200):
        if task_ready(pilot.app):
            break
        await asyncio.sleep(0.02)
    await pilot.pause()


def test_projects_screen(snap_compare, fixed_project, root, paths_shown_under_fixed_folder):
    other = Project.create(root / "invoice-fields", "extraction")
    settings.remember_project(other.root, other.name)
    settings.remember_project(fixed_project.root, fixed_project.name)
    data = settings.load()
    for item in data["recent"]:
        item["opened"] = time.time() - 7200
    data["recent"].append({"path": str(root / "gone"), "name": "gone", "opened": time.time() - 90000})
    settings.save(data)
    assert snap_compare(make_app(), terminal_size=SIZE)


def _shot(snap_compare, project, *keys, wait=None):
    """The picture after opening `project`, waiting for `wait(screen)` if given, then pressing `keys`."""
    async def run_before(pilot):
        await _open(pilot)
        for key in keys:
            if key == "WAIT":
                await wait_for(pilot, lambda: wait(pilot.app.screen))
            else:
                await pilot.press(key)
        await pilot.pause()
        await _settle(pilot)
    return snap_compare(make_app(project.root), terminal_size=SIZE, run_before=run_before)


def test_task_screen(snap_compare, fixed_project):
    assert _shot(snap_compare, fixed_project, "down", "down")


def test_seed_form(snap_compare, fixed_project):
    assert _shot(snap_compare, fixed_project, "down", "e")


def test_generate_screen(snap_compare, fixed_project):
    assert _shot(snap_compare, fixed_project, "2")


def test_review_screen(snap_compare, fixed_project):
    assert _shot(snap_compare, fixed_project, "3", "WAIT", "down", "down", "down", "space", "space",
                 wait=lambda screen: getattr(screen, "rs", None) is not None)


def test_help_screen(snap_compare, fixed_project):
    assert _shot(snap_compare, fixed_project, "question_mark")
