"""Stillroom's two faces over the engine: the Textual workbench and the headless CLI."""
