"""Label balance as a small horizontal bar chart."""
from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.widget import Widget

from stillroom import themes


class LabelBars(Widget):
    DEFAULT_CSS = """
    LabelBars { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.counts: Counter = Counter()
        self.order: list[str] = []

    def show(self, counts: Counter, order: list[str] | None = None) -> None:
        self.counts = Counter(counts)
        self.order = list(order or [])
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._labels()))

    def _labels(self) -> list[str]:
        extra = sorted(k for k in self.counts if k not in self.order)
        return [k for k in self.order] + extra

    def render(self) -> Text:
        labels = self._labels()
        if not labels:
            return Text("no labels yet", style="dim")
        width = self.content_size.width or 30
        name_w = min(16, max(len(l) for l in labels))
        top = max(self.counts.values(), default=0) or 1
        num_w = len(str(top))
        bar_w = max(4, width - name_w - num_w - 3)
        out = []
        for label in labels:
            n = self.counts.get(label, 0)
            line = Text(no_wrap=True)
            name = label if len(label) <= name_w else label[:name_w - 1] + "…"
            line.append(name.ljust(name_w) + " ", style=themes.color(self.app, "error")
                        if label not in self.order and self.order else "")
            filled = int(round(bar_w * n / top))
            line.append("█" * filled, style=self.app.current_theme.primary)
            line.append("░" * (bar_w - filled), style="dim")
            line.append(f" {n:>{num_w}}")
            out.append(line)
        return Text("\n").join(out)
