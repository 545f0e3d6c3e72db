"""Review: filter the generated rows, read one in full, keep / prune / restore / edit, undo."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Static

from stillroom.core import events as ev
from stillroom.core.errors import StillroomError
from stillroom.core.review import GLYPHS, ReviewSet, parse_filter
from stillroom.core.tasks import task_kind
from stillroom import themes
from stillroom.tui.format import messages_text
from stillroom.tui.screens.base import WorkbenchScreen
from stillroom.tui.widgets.label_bars import LabelBars
from stillroom.tui.widgets.row_table import RowTable, header_text

FILTER_HINT = 'status:kept label:billing reason:near-dup dup>0.6 len<300 is:edited "free text"'


def row_detail(row: dict, error_style: str = "") -> Text:
    out = Text()
    out.append(f"{GLYPHS.get(row.get('status'), '?')} {row.get('status', '')}", style="bold")
    out.append(f"  {row.get('id', '')}", style="dim")
    if row.get("reason"):
        out.append(f"  {row['reason']}", style=error_style)
    meta = row.get("meta") or {}
    facts = []
    for key in ("intended_label", "teacher_label", "topic", "dup_of", "rejected_reason", "teacher"):
        if meta.get(key):
            facts.append(f"{key.replace('_', ' ')}: {meta[key]}")
    if meta.get("edited"):
        facts.append("edited")
    scores = row.get("scores") or {}
    facts += [f"{k}: {v}" for k, v in scores.items()]
    if facts:
        out.append("\n" + " · ".join(facts), style="dim")
    if row.get("messages"):
        out.append("\n")
        out.append(messages_text(row["messages"]))
    return out


class ReviewScreen(WorkbenchScreen):
    MODE = "review"
    LABEL = "Review"
    AUTO_FOCUS = "#rows"
    BINDINGS = [
        Binding("k", "keep", "Keep"),
        Binding("x", "prune", "Prune"),
        Binding("r", "restore", "Restore"),
        Binding("e", "edit", "Edit"),
        Binding("u", "undo", "Undo"),
        Binding("space", "select", "Select", show=False),
        Binding("X", "prune_shown", "Prune all shown"),
        Binding("K", "keep_shown", "Keep all shown"),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("escape", "clear", "Clear selection", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rs: ReviewSet | None = None
        self._early: list[dict] = []
        self._filter_timer: Timer | None = None
        self._deferred = False
        self.filter_text = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="review-filter"):
            yield Static("filter", id="filter-label")
            yield Input("", id="filter", compact=True, placeholder=FILTER_HINT)
            yield Static("", id="review-count")
        with Horizontal(id="review-body"):
            with Vertical(id="review-main"):
                yield Static(header_text(200), id="table-header")
                yield RowTable(id="rows")
                with VerticalScroll(id="review-detail"):
                    yield Static("", id="detail")
            with Vertical(id="review-side"):
                yield Static("Label balance (kept)", classes="pane-title")
                yield LabelBars(id="balance")
                yield Static("", id="status-counts")
                yield Static("", id="save-state")

    def on_mount(self) -> None:
        self.query_one("#review-count", Static).update("loading…")
        project = self.project
        self.app.run_in_thread(lambda: ReviewSet.load(project), name="review-load", done=self.loaded)
        self.query_one(RowTable).focus()

    def loaded(self, rs: ReviewSet) -> None:
        self.rs = rs
        for row in self._early:
            rs.add(row)
        self._early = []
        self.apply_filter()

    # ------------------------------------------------------------------ display
    def refresh_colours(self) -> None:
        self.apply_filter(keep_index=True)

    def apply_filter(self, keep_position: int | None = None, keep_index: bool = False) -> None:
        if self.rs is None:
            return
        table = self.query_one(RowTable)
        try:
            flt = parse_filter(self.filter_text)
            self.query_one("#filter", Input).remove_class("bad")
        except StillroomError:
            self.query_one("#filter", Input).add_class("bad")
            return
        view = self.rs.filter(flt)
        index = table.cursor
        table.selected &= set(view)
        table.show(self.rs.entries, view, keep_position)
        if keep_index and view:
            table.cursor = min(index, len(view) - 1)
        self.refresh_side()

    def refresh_side(self) -> None:
        rs = self.rs
        if rs is None:
            return
        table = self.query_one(RowTable)
        count = Text(f"{len(table.view):,} shown of {len(rs):,}")
        if table.selected:
            count.append(f" · {len(table.selected):,} selected", style="bold")
        self.query_one("#review-count", Static).update(count)
        labels = list(task_kind(self.project.config.task).label_set)
        self.query_one("#balance", LabelBars).show(rs.label_balance(), labels)
        counts = rs.counts()
        text = Text()
        for status in ("kept", "pruned", "rejected"):
            text.append(f"{GLYPHS[status]} {status:<9}", style="dim")
            text.append(f"{counts.get(status, 0):>6,}\n")
        reasons = rs.reasons()
        if reasons:
            width = max(8, (self.query_one("#status-counts").size.width or 30) - 8)
            text.append("\nrejected by reason\n", style="dim")
            for reason, n in reasons.most_common(8):
                name = reason if len(reason) <= width else reason[:width - 1] + "…"
                text.append(f"  {name:<{width}}{n:>6,}\n", style="dim")
        self.query_one("#status-counts", Static).update(text)
        self.refresh_save_state()

    def refresh_save_state(self) -> None:
        rs = self.rs
        widget = self.query_one("#save-state", Static)
        if rs is None or not rs.dirty:
            widget.update(Text("all changes saved", style="dim"))
        elif self.workbench.generating:
            widget.update(Text("changes wait until generation pauses, then save", style="bold"))
        else:
            widget.update(Text("saving…", style="dim"))

    def on_row_table_cursor_moved(self, event: RowTable.CursorMoved) -> None:
        detail = self.query_one("#detail", Static)
        if self.rs is None or event.position is None:
            detail.update(Text("No rows." if self.rs is not None else "", style="dim"))
            return
        detail.update(row_detail(self.rs.entries[event.position].row, themes.color(self.app, "error")))
        self.query_one("#review-detail").scroll_home(animate=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        self.filter_text = event.value
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.15, self.apply_filter)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value
            try:
                parse_filter(event.value)
            except StillroomError as error:
                self.app.show_error(error, "Filter not understood")
                return
            self.apply_filter()
            self.query_one(RowTable).focus()

    # ------------------------------------------------------------------ actions
    def targets(self) -> list[int]:
        table = self.query_one(RowTable)
        if table.selected:
            return sorted(table.selected)
        return [table.position] if table.position is not None else []

    def _changed(self, count: int, verb: str, advance: bool = False) -> None:
        table = self.query_one(RowTable)
        position = table.position
        table.selected.clear()
        if count:
            self.notify(f"{verb} {count:,} row(s). u undoes.", timeout=3)
        self.apply_filter(keep_index=True)
        if advance and table.position == position:
            table.action_cursor(1)      # the row is still shown: go on to the next one
        self.save_soon()

    def _act(self, verb: str, fn, positions: list[int]) -> None:
        if self.rs is None or not positions:
            return
        try:
            count = fn(positions)
        except StillroomError as error:
            self.app.show_error(error, f"Cannot {verb.lower()} that row")
            return
        if not count:
            self.notify(f"Nothing to {verb.lower()} there.", timeout=2)
            return
        self._changed(count, {"Keep": "Kept", "Prune": "Pruned", "Restore": "Restored"}[verb],
                      advance=len(positions) == 1)

    def action_keep(self) -> None:
        self._act("Keep", self.rs.keep if self.rs else None, self.targets())

    def action_prune(self) -> None:
        self._act("Prune", self.rs.prune if self.rs else None, self.targets())

    def action_restore(self) -> None:
        self._act("Restore", self.rs.restore if self.rs else None, self.targets())

    def action_prune_shown(self) -> None:
        self._act("Prune", self.rs.prune if self.rs else None, list(self.query_one(RowTable).view))

    def action_keep_shown(self) -> None:
        self._act("Keep", self.rs.keep if self.rs else None, list(self.query_one(RowTable).view))

    def action_select(self) -> None:
        table = self.query_one(RowTable)
        pos = table.position
        if pos is None:
            return
        table.selected.symmetric_difference_update({pos})
        table.action_cursor(1)
        table.refresh()
        self.refresh_side()

    def action_clear(self) -> None:
        table = self.query_one(RowTable)
        if table.selected:
            table.selected.clear()
            table.refresh()
            self.refresh_side()
        table.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_undo(self) -> None:
        if self.rs is None:
            return
        done = self.rs.undo()
        if done is None:
            self.notify("Nothing to undo.", timeout=2)
            return
        self.notify(f"Undid {done}.", timeout=3)
        self.apply_filter(keep_index=True)
        self.save_soon()

    def action_edit(self) -> None:
        table = self.query_one(RowTable)
        pos = table.position
        if self.rs is None or pos is None:
            return
        from stillroom.tui.dialogs.row_form import RowFormDialog
        row = self.rs.entries[pos].row

        def done(messages) -> None:
            if messages and messages != row["messages"]:
                try:
                    self.rs.edit(pos, messages)
                except StillroomError as error:
                    self.app.show_error(error, "Cannot save that edit")
                    return
                self._changed(1, "Edited")
        self.app.push_screen(RowFormDialog(self.project.config.task, row, f"Edit {row.get('id', 'row')}"), done)

    # ------------------------------------------------------------------ saving
    def save_soon(self) -> None:
        """Save in a worker; while generation appends to the same file, wait until it pauses."""
        rs = self.rs
        if rs is None or not rs.dirty:
            self.refresh_save_state()
            return
        if self.workbench.generating:
            self._deferred = True
            self.refresh_save_state()
            return
        snapshot = rs.snapshot()
        self.app.run_in_thread(lambda: rs.write(snapshot), name="review-save", group="review-save",
                         done=lambda _: self.refresh_save_state())
        self.refresh_save_state()

    def flush(self) -> None:
        if self.rs is not None and self.rs.dirty:
            try:
                self.rs.save()
            except StillroomError as error:
                self.app.show_error(error, "Could not save the review")

    def generation_ended(self, error: BaseException | None) -> None:
        self.save_soon()

    def on_project_changed(self, what: str) -> None:
        """Rows another job appended (the improve loop's targeted rows) join the table; edits stay."""
        if what == "synthetic" and self.rs is not None:
            if sum(self.rs.add(row) for row in self.project.synthetic()):
                self.apply_filter(keep_index=True)

    def on_generation_event(self, event: ev.Event) -> None:
        if isinstance(event, (ev.ExampleAccepted, ev.ExampleRejected)):
            if self.rs is None:
                self._early.append(event.row)
                return
            if self.rs.add(event.row):
                table = self.query_one(RowTable)
                self.apply_filter(keep_position=table.position)
