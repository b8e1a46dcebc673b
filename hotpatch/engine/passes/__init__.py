"""Rewrite passes: one module per kind of frame-count use after the cut."""
