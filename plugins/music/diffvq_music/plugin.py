"""Registers the music modality and data sets through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .datasets import BachChorales, MidiFolder
from .modality import MusicModality


@diffvq.hookimpl
def register_modalities(register):
    register(MusicModality)


@diffvq.hookimpl
def register_datasets(register):
    register(BachChorales)
    register(MidiFolder)
