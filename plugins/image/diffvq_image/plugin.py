"""Registers the image modality and its data sets through diffvq's hooks."""

from __future__ import annotations

import diffvq

from .datasets import Digits, FashionMnist, ImageFolder, Mnist
from .modality import ImageModality


@diffvq.hookimpl
def register_modalities(register):
    register(ImageModality)


@diffvq.hookimpl
def register_datasets(register):
    for cls in (Mnist, FashionMnist, Digits, ImageFolder):
        register(cls)
