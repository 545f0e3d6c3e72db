"""A virtual table for thousands of generated rows: only the visible lines are ever rendered."""
from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from stillroom import themes
from stillroom.core.review import GLYPHS, Entry
from stillroom.core.records import one_line

COLUMNS = [("", 2), ("", 2), ("id", 11), ("label", 12), ("reason", 15), ("len", 5), ("dup", 5)]
STATUS_COLOUR = {"kept": "success", "pruned": "error", "rejected": "warning"}   # theme colours


def header_text(width: int) -> Text:
    line = Text(no_wrap=True, style="bold")
    for name, w in COLUMNS:
        line.append(name.ljust(w)[:w] + " " if name else " " * w)
    line.append("text")
    line.truncate(width)
    return line


class RowTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RowTable { height: 1fr; background: $surface; }
    RowTable > .rowtable--cursor { background: $block-cursor-background; }
    RowTable:focus > .rowtable--cursor { background: $primary 40%; }
    RowTable > .rowtable--selected { color: $accent; }
    """
    COMPONENT_CLASSES = {"rowtable--cursor", "rowtable--selected"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)

    class CursorMoved(Message):
        def __init__(self, table: "RowTable", position: int | None) -> None:
            super().__init__()
            self.table = table
            self.position = position       # index into ReviewSet.entries, None when empty

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[Entry] = []
        self.view: list[int] = []
        self.selected: set[int] = set()

    def show(self, entries: list[Entry], view: list[int], keep_position: int | None = None) -> None:
        self.entries = entries
        self.view = view
        self.virtual_size = Size(1, len(view))
        if keep_position is not None and view:
            import bisect
            at = bisect.bisect_left(view, keep_position)
            self.cursor = min(at, len(view) - 1)
        else:
            self.cursor = min(self.cursor, max(0, len(view) - 1))
        self.refresh()

    @property
    def position(self) -> int | None:
        return self.view[self.cursor] if self.view else None

    def watch_cursor(self, value: int) -> None:
        if self.view:
            self.scroll_to_region_y(value)
        self.post_message(self.CursorMoved(self, self.position))
        self.refresh()

    def scroll_to_region_y(self, y: int) -> None:
        height = self.scrollable_content_region.height or 1
        top = self.scroll_offset.y
        if y < top:
            self.scroll_to(y=y, animate=False)
        elif y >= top + height:
            self.scroll_to(y=y - height + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        if self.view:
            self.cursor = max(0, min(len(self.view) - 1, self.cursor + step))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        if self.view:
            self.cursor = 0 if where == 0 else len(self.view) - 1

    def on_click(self, event) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < len(self.view):
            self.cursor = row

    def render_line(self, y: int) -> Strip:
        row = y + self.scroll_offset.y
        width = self.scrollable_content_region.width or self.size.width
        if row >= len(self.view):
            return Strip.blank(width)
        pos = self.view[row]
        entry = self.entries[pos]
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("● " if pos in self.selected else "  ", style="bold")
        colour = STATUS_COLOUR.get(entry.status)
        line.append(GLYPHS.get(entry.status, "?") + " ", style=themes.color(self.app, colour) if colour else "")
        for value, w in ((entry.id, 11), (entry.label, 12), (entry.reason, 15)):
            cell = value if len(value) <= w else value[:w - 1] + "…"
            line.append(cell.ljust(w) + " ")
        line.append(f"{entry.length:>5} ")
        line.append(f"{entry.dup:>4.2f} " if entry.dup else "   · ", style="dim" if entry.dup < 0.5 else "")
        line.append(one_line(entry.text)[:max(0, width - line.cell_len)])
        line.truncate(width)
        base = self.rich_style
        if row == self.cursor:
            base = base + self.get_component_rich_style("rowtable--cursor")
        elif pos in self.selected:
            base = base + self.get_component_rich_style("rowtable--selected")
        segments = [Segment(seg.text, base + seg.style if seg.style else base)
                    for seg in line.render(self.app.console) if seg.text != "\n"]
        return Strip(segments).extend_cell_length(width, base).crop(0, width)
