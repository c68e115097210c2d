"""Registers the latent-diffusion prior through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .prior import LatentDiffusionPrior


@diffvq.hookimpl
def register_priors(register):
    register(LatentDiffusionPrior)
