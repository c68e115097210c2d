"""The default decoder: the tokenizer's own decoder, then the modality's inverse transform."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

import diffvq


class TokenizerDecoder:
    """Tokens -> tokenizer.decode -> modality.from_model (e.g. [-1, 1] tensors to [0, 1] pixels)."""

    name: ClassVar[str] = "tokenizer"

    def __init__(self, modality: Any, tokenizer: Any):
        self.modality = modality
        self.tokenizer = tokenizer

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        return self.modality.from_model(self.tokenizer.decode(tokens))


@diffvq.hookimpl
def register_decoders(register):
    register(TokenizerDecoder)
