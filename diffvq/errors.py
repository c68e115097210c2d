"""User-facing errors: one clear line, exit status 2, no traceback.

Anything the user can fix (a recipe, a file, a plugin name) raises `UserError`; everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. `str(error)` is the whole message shown to them."""

    exit_status = 2


class RecipeError(UserError):
    """Every problem found in a recipe, reported at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            lines = [f"{source}: {len(problems)} problems"] + [f"  - {p}" for p in problems]
            super().__init__("\n".join(lines))
