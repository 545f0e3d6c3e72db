"""The teacher's text as it streams: one widget that appends chunks; the current candidate stands out."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widget import Widget

from stillroom import themes


class StreamView(Widget, can_focus=True):
    """Keeps the last `keep` candidates; each is a header line and the text written for it.

    Text is plain data: it is never parsed as markup.
    """

    DEFAULT_CSS = """
    StreamView {
        width: 1fr;
        height: 1fr;
        padding: 0 1;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    """

    def __init__(self, keep: int = 12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "teacher"
        # [header, {"input": str, "answer": str}, verdict, candidate index]
        self._blocks: deque = deque(maxlen=keep)

    def begin(self, index: int, label: str | None) -> None:
        header = f"#{index}" + (f"  → {label}" if label else "")
        self._blocks.append([header, {"input": "", "answer": ""}, None, index])
        self.refresh()

    def _block(self, index: int | None):
        """Candidate `index`'s block (several are in flight when K > 1), else the newest one."""
        for block in reversed(self._blocks):
            if block[1] is not None and (index is None or block[3] == index):
                return block
        return None

    def append_chunk(self, text: str, purpose: str = "input", index: int | None = None) -> None:
        if not self._blocks:
            self.begin(0 if index is None else index, None)
        block = self._block(index)
        if block is None:
            return
        key = "answer" if purpose == "answer" else "input"
        block[1][key] += text
        self.refresh()

    def verdict(self, kept: bool, reason: str = "", index: int | None = None) -> None:
        block = self._block(index)
        if block is not None:
            block[2] = "kept" if kept else f"rejected: {reason}"
            self.refresh()

    def settle(self, outcome: str) -> None:
        """Mark every candidate still open (started, never committed: the run ended first)."""
        for block in self._blocks:
            if block[1] is not None and block[2] is None:
                block[2] = outcome
        self.refresh()

    def note(self, message: str) -> None:
        self._blocks.append([message, None, None, None])
        self.refresh()

    def clear(self) -> None:
        self._blocks.clear()
        self.refresh()

    @property
    def text(self) -> str:
        """Everything shown, as plain text (for tests)."""
        return self.render().plain

    def render(self) -> Text:
        width = max(10, self.content_size.width or 80)
        lines: list[Text] = []
        last = len(self._blocks) - 1
        for n, (header, parts, verdict, _) in enumerate(self._blocks):
            current = n == last and verdict is None
            if parts is None:
                lines.append(Text(header, style="italic dim"))
                continue
            head = Text()
            mark = ("dim" if verdict and not verdict.startswith(("kept", "rejected"))
                    else themes.color(self.app, "success" if verdict == "kept" else "error"))
            if verdict:
                head.append("✓ " if verdict == "kept" else "✗ " if verdict.startswith("rejected") else "· ",
                            style=mark)
            else:
                head.append("▸ ", style="bold")
            head.append(header, style="bold" if current else "dim")
            if verdict:
                head.append("  ")
                head.append(verdict, style=mark)
            lines.append(head)
            body = Text(parts["input"].strip(), style="" if current else "dim")
            if parts["answer"]:
                body.append("  ⇒ ", style="dim")
                body.append(parts["answer"].strip(), style="bold" if current else "dim")
            lines.append(body)
        text = Text("\n").join(lines) if lines else Text("The teacher's text appears here as it writes.",
                                                          style="dim italic")
        # Show the newest lines: drop from the top what does not fit.
        height = self.content_size.height or 20
        wrapped = text.wrap(self.app.console, width)
        if len(wrapped) > height:
            wrapped = wrapped[len(wrapped) - height:]
        return Text("\n").join(wrapped)
