"""Errors the user can fix. The CLI prints them on one line and exits 2; the TUI shows a dialog."""


class StillroomError(Exception):
    """A problem the user can fix: bad file, bad config, missing model, busy project."""

    remedy: str = ""

    def __init__(self, message: str, remedy: str = ""):
        super().__init__(message)
        if remedy:
            self.remedy = remedy

    def one_line(self) -> str:
        text = str(self).replace("\n", " ")
        return f"{text} ({self.remedy})" if self.remedy else text


class ConfigError(StillroomError):
    """stillroom.toml is missing, malformed or has a wrong value."""


class DataError(StillroomError):
    """An example file (JSONL, CSV, ...) has a malformed line."""


class ModelError(StillroomError):
    """A model reference cannot be resolved, loaded or used."""


class ProjectLocked(StillroomError):
    """Another process holds the project's lock."""


class Cancelled(StillroomError):
    """A long operation was stopped through its cancel event."""
