"""Every hook a diffvq plugin can implement, in one place.

Each hook receives a `register` callback and calls it once per component class it provides (the
shape of `llm` and tox hooks). Components are classes with a class attribute `name`; their typed
`__init__` keywords are their recipe schema. A plugin implements only the hooks it needs:

    import diffvq

    @diffvq.hookimpl
    def register_priors(register):
        register(MyPrior)
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("diffvq")

Register = Callable[[type], None]


@hookspec
def register_modalities(register: Register) -> None:
    """Register `Modality` classes: what a signal is (image, speech, music), how it is shown or
    played (galleries), and how it is turned into the tensor a tokenizer sees and back."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register `Dataset` classes. Each names the modality it belongs to (`modality = "image"`) and
    yields signals with integer class labels for a `train` and a `test` split."""


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register `Tokenizer` classes: trainable maps from a modality's model tensor to a grid of
    codebook indices and back (a VQ-VAE, FSQ, residual VQ, ...)."""


@hookspec
def register_priors(register: Register) -> None:
    """Register `Prior` classes: generative models of token sequences given a class condition
    (autoregressive, masked diffusion, ...). Priors never see pixels or sound."""


@hookspec
def register_decoders(register: Register) -> None:
    """Register `Decoder` classes: tokens to a signal in the modality's own format, usually the
    tokenizer's decoder followed by the modality's inverse transform (or a learned vocoder)."""
