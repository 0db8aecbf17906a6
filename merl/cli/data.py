"""`merl` commands for this area (heavy imports inside the command bodies)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)

# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = []
