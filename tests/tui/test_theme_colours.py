"""Text drawn from Python takes its colours from the theme: no fixed colour names in the screens and
widgets, and a theme change redraws what a screen already drew."""
import re
from pathlib import Path

import pytest
from rich.style import Style
from textual.widgets import Static

from workbench import open_screen, synthetic_rows, task_ready, wait_for
from stillroom.core.project import Project
from stillroom.themes import STILLROOM_DARK, STILLROOM_LIGHT
from stillroom.tui.app import make_app

TUI = Path(__file__).resolve().parents[2] / "tui"
# a Rich style string naming a fixed colour: "red", "bold green", "reverse yellow", "on blue", ...
NAMED = re.compile(r"""["'](?:(?:bold|dim|italic|reverse|underline|on) )*"""
                   r"""(?:bright_)?(red|green|yellow|blue|magenta|cyan|white|black)\b[^"']*["']""")


def test_no_named_colours_in_screens_widgets_and_dialogs():
    found = [f"{path.relative_to(TUI)}:{n}: {line.strip()}"
             for folder in ("screens", "widgets", "dialogs") for path in sorted((TUI / folder).glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if NAMED.search(line)]
    assert not found, "\n".join(found)


def colours(static: Static) -> set:
    styles = [Style.parse(str(span.style)) for span in static.content.spans if span.style]
    return {style.color.name for style in styles if style.color is not None}


@pytest.mark.anyio
async def test_generate_counters_follow_the_theme(tmp_path):
    project = Project.create(tmp_path / "support-routing", demo=True)
    project.save_synthetic(synthetic_rows(30))
    app = make_app(project.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: task_ready(app))
        await open_screen(pilot, app, "2", "GenerateScreen")
        counters = app.screen.query_one("#counters", Static)
        assert STILLROOM_DARK.success in colours(counters)
        app.theme = STILLROOM_LIGHT.name
        await pilot.pause()
        assert STILLROOM_LIGHT.success in colours(counters)
        assert STILLROOM_DARK.success not in colours(counters)
