"""Registers the block-diffusion prior through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .prior import BlockDiffusionPrior


@diffvq.hookimpl
def register_priors(register):
    register(BlockDiffusionPrior)
