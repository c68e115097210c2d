"""Registers the multinomial-diffusion prior through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .prior import MultinomialDiffusionPrior


@diffvq.hookimpl
def register_priors(register):
    register(MultinomialDiffusionPrior)
