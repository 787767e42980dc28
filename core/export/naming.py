"""Folder names made from run names (exports, checkpoints, kept weights)."""

from __future__ import annotations


def folder_name(recipe_name: str) -> str:
    """A folder name made of the name's letters, digits and dashes."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in recipe_name.lower())
    return "-".join(part for part in safe.split("-") if part)[:80] or "export"
