"""Registers the speech data sets through diffvq's hooks (diffvq-audio owns the modality)."""

from __future__ import annotations

import diffvq

from .datasets import SpokenDigits


@diffvq.hookimpl
def register_datasets(register):
    register(SpokenDigits)
