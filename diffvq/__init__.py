"""diffvq: discrete generative modelling across modalities.

A VQ tokenizer turns signals into token grids, priors (autoregressive or diffusion) learn to
generate those tokens, and a decoder turns tokens back into signals. Plugins provide modalities,
data sets, tokenizers, priors and decoders through the hooks in `diffvq.hookspecs`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("diffvq")
"""Decorator for plugin hook implementations: `@diffvq.hookimpl def register_priors(register)`."""

try:
    __version__ = version("diffvq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["hookimpl", "__version__"]
