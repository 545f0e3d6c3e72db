"""One model's side of the chat: the conversation as that model answered it, streaming, with its speed
(time to first token, tokens per second) underneath. Model text is data, never markup."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from stillroom import themes


class ChatColumn(Vertical):
    DEFAULT_CSS = """
    ChatColumn { width: 1fr; height: 1fr; border: round $panel-lighten-2; border-title-color: $text;
                 border-subtitle-color: $text-muted; padding: 0 0 0 1; }
    ChatColumn.streaming { border: round $primary; }
    ChatColumn > VerticalScroll { height: 1fr; scrollbar-size-vertical: 1; }
    ChatColumn .transcript { width: 1fr; padding-right: 1; }
    ChatColumn .stats { height: 1; color: $text-muted; }
    """

    def __init__(self, column: str, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.column = column
        self.border_title = title
        self.turns: list[list] = []          # [user text, answer text, note]
        self.note_text = ""
        self.stats_text = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", classes="transcript")
        yield Static("", classes="stats")

    def on_mount(self) -> None:
        self.redraw()

    def set_title(self, title: str, model: str = "") -> None:
        self.border_title = title + (f" · {model}" if model else "")

    def begin(self, user: str) -> None:
        self.turns.append([user, "", ""])
        self.note_text = ""
        self.stats_text = "waiting for the first token…"
        self.add_class("streaming")
        self.redraw()

    def append(self, text: str) -> None:
        if not self.turns:
            return
        # A base model in completion mode starts its answer with the space after "Answer:".
        answer = (self.turns[-1][1] + text).lstrip()
        if answer == self.turns[-1][1]:
            return
        self.turns[-1][1] = answer
        self.redraw()

    def finish(self, stats: str, note: str = "") -> None:
        if self.turns:
            self.turns[-1][2] = note
        self.stats_text = stats
        self.remove_class("streaming")
        self.redraw()

    def note(self, text: str) -> None:
        self.note_text = text
        self.redraw()

    def clear(self) -> None:
        self.turns.clear()
        self.stats_text = ""
        self.note_text = ""
        self.remove_class("streaming")
        self.redraw()

    @property
    def answer(self) -> str:
        return self.turns[-1][1] if self.turns else ""

    @property
    def text(self) -> str:
        return self._transcript().plain

    def _transcript(self) -> Text:
        muted = themes.muted(self.app) or "dim"
        accent = themes.color(self.app, "chart-train")
        out = Text()
        for n, (user, answer, note) in enumerate(self.turns):
            if n:
                out.append("\n\n")
            out.append("› ", style=f"bold {accent}")
            out.append(user, style="bold")
            out.append("\n")
            out.append(answer.strip("\n"))
            if n == len(self.turns) - 1 and self.has_class("streaming"):
                out.append("▍", style=accent)
            if note:
                out.append(f"\n({note})", style=f"italic {muted}")
        if self.note_text:
            if self.turns:
                out.append("\n\n")
            out.append(self.note_text, style=f"italic {muted}")
        if not self.turns and not self.note_text:
            out.append("Answers appear here as the model writes them.", style=f"italic {muted}")
        return out

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        self.query_one(".transcript", Static).update(self._transcript())
        self.query_one(".stats", Static).update(Text(self.stats_text))
        scroll = self.query_one(VerticalScroll)
        scroll.scroll_end(animate=False, immediate=False)
