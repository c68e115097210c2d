"""Registers the music data sets through diffvq's hooks (diffvq-audio owns the modality)."""

from __future__ import annotations

import diffvq

from .datasets import BachChorales, MidiFolder


@diffvq.hookimpl
def register_datasets(register):
    register(BachChorales)
    register(MidiFolder)
