"""Optional system packages (a data set from apt, a program on PATH), and a switch that hides them.

A test that needs an optional package must skip, never fail, where it is missing. To prove that on
a machine that has the packages, set `DIFFVQ_HIDE_OPTIONAL` to a comma-separated list of package
names (Debian's, e.g. `dataset-fashion-mnist,fluidsynth,chromium`) or to `all`: every place that
detects an optional package asks `hidden()` first and then reports it absent. The core knows no
package by name; each plugin names its own.
"""

from __future__ import annotations

import os
import shutil

ENV = "DIFFVQ_HIDE_OPTIONAL"


def hidden(package: str) -> bool:
    """Whether `package` is hidden by DIFFVQ_HIDE_OPTIONAL (read at every call, so a test or a
    subprocess can set it late)."""
    names = {n.strip().lower() for n in os.environ.get(ENV, "").split(",") if n.strip()}
    return "all" in names or package.lower() in names


def which(*commands: str, package: str) -> str | None:
    """The path of the first of `commands` on PATH, or None if none is there or `package` (the
    one that installs them) is hidden."""
    if hidden(package):
        return None
    for command in commands:
        found = shutil.which(command)
        if found is not None:
            return found
    return None
