"""Registers the audio modality and the audio-folder data set through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .datasets import AudioFolder
from .modality import AudioModality


@diffvq.hookimpl
def register_modalities(register):
    register(AudioModality)


@diffvq.hookimpl
def register_datasets(register):
    register(AudioFolder)
