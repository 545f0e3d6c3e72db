"""ARCHITECTURE.md names every module under core/, tui/ and themes/, and names only modules that exist."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_map_names_every_room_and_only_rooms_that_exist():
    text = (REPO / "ARCHITECTURE.md").read_text("utf-8")
    named = set(re.findall(r"`((?:core|tui|themes)/[\w/]+\.py)`", text))
    present = {str(p.relative_to(REPO)) for folder in ("core", "tui", "themes")
               for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(present - named) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(named - present) == [], "ARCHITECTURE.md names modules that do not exist"
