"""Export from the runs list: pick a format by keyboard, watch it finish, read the resulting paths."""
import pytest
from textual.widgets import RadioSet

from modelscreens import RUN_ID, TEACHER
from workbench import open_screen, wait_for
from stillroom.tui.app import make_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_export_adapter_from_the_runs_list(project_with_run):
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        await open_screen(pilot, app, "4", "TrainScreen")
        await open_screen(pilot, app, "e", "ExportDialog")
        dialog = app.screen
        assert dialog.format == "gguf"
        radios = dialog.query_one(RadioSet)
        assert radios.has_focus
        await pilot.press("up", "up", "enter")
        await wait_for(pilot, lambda: dialog.format == "adapter")
        assert "adapter folder" in str(dialog.query_one("#export-help").render())
        await pilot.press("s")
        await wait_for(pilot, lambda: dialog.result is not None, timeout=60)
        target = project_with_run.exports_dir / RUN_ID / "adapter"
        assert (target / "adapter_config.json").exists()
        assert str(target) in str(dialog.query_one("#export-result").render())
        assert "done in" in str(dialog.query_one("#export-status").render())
        await open_screen(pilot, app, "escape", "TrainScreen")


QUANT_TABLE = {"metric": "accuracy", "examples": 24,
               "merged": {"folder": "merged", "size_bytes": 538_000_000, "score": 0.75},
               "rows": [{"quant": q, "file": f"{RUN_ID}-{q}.gguf", "size_bytes": size, "tokens_per_s": 91.5,
                         "score": 0.708, "agreement": 0.875, "fallback_tensors": 0, "weight_tensors": 211}
                        for q, size in (("q4_k_m", 105_000_000), ("q5_k_m", 112_000_000), ("q6_k", 138_000_000),
                                        ("q8_0", 145_000_000), ("f16", 271_000_000))]}


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_quant_choice_and_quant_table_fit_the_screen(project_with_run, size):
    from textual.containers import Vertical
    from textual.geometry import Region
    from textual.widgets import Checkbox
    from stillroom.core.export import ExportResult, table_cells
    from stillroom.tui.bridge import JobEnded
    from stillroom.tui.dialogs.export import ExportDialog
    app = make_app(project_with_run.root, teacher_factory=TEACHER)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.workbench.project is not None)
        dialog = ExportDialog(RUN_ID)
        await app.push_screen(dialog)
        await wait_for(pilot, lambda: app.screen is dialog)
        assert dialog.quants == ["q4_k_m"]                      # the default, as for Ollama
        boxes = [dialog.query_one(f"#quant-{q}", Checkbox) for q in ("q4_k_m", "q5_k_m", "q6_k", "q8_0", "f16")]
        boxes.append(dialog.query_one("#export-check", Checkbox))
        for box in boxes:
            assert box.region.width and box.region.right <= size[0] and box.region.bottom <= size[1], box.id
        assert len({box.region.y for box in boxes[:5]}) == 1  # one row

        for _ in range(8):                                     # by keyboard: tab to q8_0, tick it
            if app.focused is boxes[3]:
                break
            await pilot.press("tab")
        assert app.focused is boxes[3]
        await pilot.press("space")
        assert dialog.quants == ["q4_k_m", "q8_0"]
        await pilot.press("space")
        assert dialog.quants == ["q4_k_m"]

        paths = [project_with_run.exports_dir / RUN_ID / row["file"] for row in QUANT_TABLE["rows"]]
        dialog.post_message(JobEnded("export", ExportResult("gguf", paths, {"quant": "q4_k_m"}, QUANT_TABLE)))
        await wait_for(pilot, lambda: dialog.result is not None)
        await pilot.pause()
        result = dialog.query_one("#export-result")
        lines = ["".join(s.text for s in strip).rstrip()
                 for strip in result.render_lines(Region(0, 0, result.size.width, result.size.height))]
        header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("quant"))
        for name in ("size", "accuracy", "vs merged"):
            assert name in lines[header] + lines[header + 1]
        for row in QUANT_TABLE["rows"]:                         # the files under their folder, one a line
            assert any(line.endswith(f"→ {row['file']}") for line in lines), row["file"]
        for cells in table_cells(QUANT_TABLE):                 # each row whole, on one line
            assert any(all(c in line for c in cells) for line in lines), cells
        container = dialog.query_one(Vertical)
        container.scroll_end(animate=False)
        await pilot.pause()
        assert result.region.bottom <= container.region.bottom  # the whole table can be scrolled into view
