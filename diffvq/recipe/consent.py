"""Which local plugin files may run. A recipe is data that people share; a plugin file is Python
that runs as the user. So a plugin file named by a recipe (or one of its bases, or an override)
is imported only with the user's consent, given one of three ways:

- `-p FILE` on the command line (consent for that file),
- `--allow-plugins` (consent for every plugin file this recipe names, for this command),
- `trusted_plugins:` in the user's config, `$XDG_CONFIG_HOME/diffvq/config.yaml` (default
  `~/.config/diffvq/config.yaml`): absolute paths of files, or of folders whose files are all
  trusted. A path is trusted, not a content: whoever can write a trusted file or folder can run
  code as you, so list only places that only you can write.

Without consent nothing is imported, and the error names each file and the way to allow it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .files import load_mapping

CONFIG_KEY = "trusted_plugins"


def config_path() -> Path:
    """The user's diffvq config file (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "diffvq" / "config.yaml"


def trusted_paths(config: Path | None = None) -> list[Path]:
    """The files and folders the user's config trusts (resolved); a malformed config is an
    error that names it, never a silent 'trust nothing' or 'trust all'."""
    config = config or config_path()
    if not config.is_file():
        return []
    data = load_mapping(config, what="config file")
    unknown = sorted(str(k) for k in data if k != CONFIG_KEY)
    if unknown:
        raise UserError(f"{config}: unknown key(s) {', '.join(unknown)}; the config file has "
                        f"only {CONFIG_KEY!r}")
    entries = data.get(CONFIG_KEY) or []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise UserError(f"{config}: {CONFIG_KEY} must be a list of paths (files or folders)")
    out = []
    for e in entries:
        p = Path(e).expanduser()
        if not p.is_absolute():
            raise UserError(f"{config}: {CONFIG_KEY} entry {e!r} is not an absolute path")
        out.append(p.resolve())
    return out


def is_trusted(file: str | Path, trusted: list[Path]) -> bool:
    path = Path(file).resolve()
    return any(path == t or t in path.parents for t in trusted)


def require(named_by: dict[str, str], *, given: list[str] = (), allow_all: bool = False) -> None:
    """Refuse, before anything is imported, the plugin files (`{file: the recipe that names
    it}`) that the user has not consented to."""
    if allow_all or not named_by:
        return
    trusted = trusted_paths()
    refused = [f for f in named_by if f not in given and not is_trusted(f, trusted)]
    if not refused:
        return
    names = "; ".join(f"{named_by[f]} names {f}" for f in refused)
    flags = " ".join(f"-p {f}" for f in refused)
    raise UserError(f"local plugin files run as Python code, so diffvq loads them only with your "
                    f"consent ({names}): add --allow-plugins (or {flags}) to the command, or "
                    f"list them under {CONFIG_KEY} in {config_path()}")
