"""Textual themes shipped with Stillroom. `THEMES` is what the app registers; `DEFAULT_THEME` is used
unless the user picked another one (remembered in the config folder). Textual's own themes work too.

Besides Textual's colour system, each Stillroom theme sets a few variables of its own, read from Python
by `color()` (the loss chart, right/wrong marks, highlighted differences). Under any other theme they
fall back to that theme's standard colours, so the TCSS only ever uses Textual's standard variables.
"""
from __future__ import annotations

from textual.theme import Theme

# Custom variable -> the standard theme colour used when a theme does not set it.
CUSTOM = {
    "chart-train": "primary",
    "chart-eval": "accent",
    "chart-grid": "panel",
    "mark-right": "success",
    "mark-wrong": "error",
    "diff-background": "accent",
}

STILLROOM_DARK = Theme(
    name="stillroom-dark",
    primary="#7aa2c8",
    secondary="#8fb3a0",
    accent="#d8a657",
    foreground="#d4d4cf",
    background="#15171a",
    surface="#1c1f23",
    panel="#23272d",
    success="#8fb573",
    warning="#d8a657",
    error="#d9736b",
    dark=True,
    variables={
        "block-cursor-background": "#2d3a48",
        "block-cursor-foreground": "#e8e8e3",
        "block-cursor-text-style": "none",
        "footer-key-foreground": "#d8a657",
        "input-selection-background": "#7aa2c8 35%",
        "border-blurred": "#2f343b",
        "chart-train": "#7aa2c8",
        "chart-eval": "#d8a657",
        "chart-grid": "#3a4048",
        "mark-right": "#8fb573",
        "mark-wrong": "#d9736b",
        "diff-background": "#4a3d22",
    },
)

# Paper and ink: warm off-white, slate text, a muted teal and a brick accent.
STILLROOM_LIGHT = Theme(
    name="stillroom-light",
    primary="#2f6f8f",
    secondary="#5b7f62",
    accent="#b3541e",
    foreground="#26292e",
    background="#f6f4ef",
    surface="#eceae4",
    panel="#e0ddd5",
    success="#3f7d3a",
    warning="#a86a00",
    error="#b3261e",
    dark=False,
    variables={
        "block-cursor-background": "#cfdde6",
        "block-cursor-foreground": "#1d2024",
        "block-cursor-text-style": "none",
        "footer-key-foreground": "#b3541e",
        "footer-background": "#e0ddd5",
        "input-selection-background": "#2f6f8f 30%",
        "border-blurred": "#d3d0c7",
        "chart-train": "#2f6f8f",
        "chart-eval": "#b3541e",
        "chart-grid": "#cfcbc1",
        "mark-right": "#3f7d3a",
        "mark-wrong": "#b3261e",
        "diff-background": "#f3d9a4",
    },
)

# High contrast: pure black and white, saturated signal colours, a bold cursor; for bright rooms,
# projectors and low vision.
STILLROOM_CONTRAST = Theme(
    name="stillroom-contrast",
    primary="#4fc3ff",
    secondary="#ffffff",
    accent="#ffd400",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#1a1a1a",
    success="#3dff6e",
    warning="#ffd400",
    error="#ff5a5a",
    dark=True,
    luminosity_spread=0.25,
    text_alpha=1.0,
    variables={
        "block-cursor-background": "#ffd400",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
        "footer-key-foreground": "#ffd400",
        "footer-background": "#000000",
        "input-selection-background": "#4fc3ff 50%",
        "border": "#ffffff",
        "border-blurred": "#8a8a8a",
        "text-muted": "#d0d0d0",
        "chart-train": "#4fc3ff",
        "chart-eval": "#ffd400",
        "chart-grid": "#5a5a5a",
        "mark-right": "#3dff6e",
        "mark-wrong": "#ff5a5a",
        "diff-background": "#6b5900",
    },
)

THEMES = [STILLROOM_DARK, STILLROOM_LIGHT, STILLROOM_CONTRAST]
DEFAULT_THEME = STILLROOM_DARK.name


def color(app, name: str) -> str:
    """A Stillroom colour variable (see CUSTOM) for the app's current theme, as a Rich colour string."""
    theme = app.current_theme
    value = theme.variables.get(name)
    if not value:
        standard = CUSTOM.get(name, name)
        value = getattr(theme, standard, None) or app.theme_variables.get(standard) or theme.primary
    return value.split()[0]


def muted(app) -> str:
    """The theme's muted text colour (for secondary figures drawn from Python)."""
    value = app.theme_variables.get("text-muted") or app.theme_variables.get("foreground-muted") or ""
    return value.split()[0] if value and not value.startswith("auto") else ""
