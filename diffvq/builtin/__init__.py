"""First-party components that ship with the core, registered through entry points like any
third-party plugin (see `[project.entry-points.diffvq]` in pyproject.toml)."""
