"""What a command tells the entry point while it runs (kept apart so ``main`` imports nothing)."""

from __future__ import annotations

# Shown after "interrupted" on Ctrl-C: how to pick up where the command stopped. Commands that
# resume (prune, run, demo) set it once they know their output folder.
resume_hint: str | None = None

# What --import imported in this invocation (absolute file paths, module names): ``run`` hands
# them to its worker processes with the config's own imports.
imports: list[str] = []
