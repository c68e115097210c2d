"""The four interfaces the core owns and plugins implement: Modality, Tokenizer, Prior, Decoder
(plus Dataset, which feeds a modality). They are Protocols: a plugin needs no base class, only
these attributes and methods. A component's typed `__init__` keywords are its recipe schema; the
arguments the pipeline passes itself (`INJECTED` below) are not recipe keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

import torch
from torch import Tensor

# Every data set offers all three; validation is carved from the train data (diffvq.splits), so
# that anything tuned is tuned on it and the test split is read once, for the table.
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
LikelihoodKind = Literal["exact", "bound", "none"]


@dataclass(frozen=True)
class DataInfo:
    """What a data set holds, as the modality and tokenizer need to know it."""

    modality: str
    shape: tuple[int, ...]  # shape of one signal, e.g. (C, H, W) for images, (T,) for audio
    class_names: tuple[str, ...] = ()  # empty for unlabelled data
    sample_rate: int | None = None  # audio only
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataInfo":
        return cls(
            modality=d["modality"],
            shape=tuple(d["shape"]),
            class_names=tuple(d.get("class_names", ())),
            sample_rate=d.get("sample_rate"),
            extra=dict(d.get("extra", {})),
        )


@dataclass(frozen=True)
class TokenSpec:
    """All a prior knows about its data: a grid of tokens from a vocabulary, and classes."""

    grid_shape: tuple[int, ...]  # e.g. (7, 7) for an image, (T,) for audio
    vocab_size: int  # codebook size K; tokens are in [0, K)
    n_classes: int  # 0: unconditional; labels are in [0, n_classes)

    @property
    def seq_len(self) -> int:
        return math.prod(self.grid_shape)

    def to_dict(self) -> dict[str, Any]:
        return {"grid_shape": list(self.grid_shape), "vocab_size": self.vocab_size,
                "n_classes": self.n_classes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenSpec":
        return cls(tuple(d["grid_shape"]), int(d["vocab_size"]), int(d["n_classes"]))


@runtime_checkable
class Dataset(Protocol):
    """A source of real signals with labels; registered per modality."""

    name: ClassVar[str]
    modality: ClassVar[str]

    def info(self) -> DataInfo:
        """Shape, classes and sample rate, known without loading everything."""
        ...

    def load(self, split: Split) -> tuple[Tensor, Tensor]:
        """All signals of a split, `[N, *info().shape]` (float), and labels `[N]` (long).
        Every split in `SPLITS` is accepted, and the three are disjoint: validation comes out
        of the train data, by group where there are groups (voices, chorales, source files),
        deterministically (`diffvq.splits` does this for the first-party data sets)."""
        ...

    def fingerprint(self) -> str:
        """Identity of the data beyond the recipe parameters (file list, sizes, versions), so
        that a changed folder invalidates the runs built on it. Return "" when the parameters
        say it all."""
        ...


@runtime_checkable
class Modality(Protocol):
    """What a signal is and how people see or hear it. Constructed with `info` (DataInfo).
    A modality takes the data sets registered for its name; one that specialises another (music
    is audio) may also list `data_modalities = ("audio",)` to take theirs."""

    name: ClassVar[str]

    def to_model(self, signals: Tensor) -> Tensor:
        """Signals `[B, *info.shape]` to the tensor a tokenizer sees, `[B, C, *spatial]`."""
        ...

    def from_model(self, x: Tensor) -> Tensor:
        """The inverse of `to_model`: model tensors back to signals."""
        ...

    def model_shape(self) -> tuple[int, ...]:
        """The shape `to_model` gives one signal, `(C, *spatial)`."""
        ...

    def reconstruction_metrics(self, x: Tensor, x_hat: Tensor) -> dict[str, float]:
        """How close reconstructions are, in the modality's usual terms (PSNR for images)."""
        ...

    def write_gallery(self, signals: Tensor, labels: Tensor, out_dir: Path,
                      title: str = "") -> list[Path]:
        """Write signals for people to look at or listen to; return the files written."""
        ...


@runtime_checkable
class Judge(Protocol):
    """A small classifier of model tensors: penultimate `features` for Fréchet distance and
    precision/recall, `logits` for class accuracy, `training_loss` for the generic trainer on
    batches `{"x": [B, C, *spatial], "labels": [B]}`."""

    def features(self, x: Tensor) -> Tensor: ...

    def logits(self, x: Tensor) -> Tensor: ...

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...


@runtime_checkable
class HasJudge(Protocol):
    """Optional for modalities with labelled data: the judge evaluation measures samples with.
    `judge_train` holds its training settings (TrainConfig keys); they key its cache entry."""

    judge_train: ClassVar[dict[str, Any]]

    def judge(self) -> "torch.nn.Module":
        """A fresh, untrained judge (a `Judge`) for this modality's data."""
        ...


@runtime_checkable
class HasSignalMetrics(Protocol):
    """Optional for modalities: measures of a set of signals in the modality's own terms (how
    tonal music is, how pitched). Evaluation reports them for every prior's samples beside the
    value real data gets, which is the target: closer is better, whichever the direction.
    `signal_metric_notes` says in a sentence what each one measures (for reports)."""

    signal_metric_notes: ClassVar[dict[str, str]]

    def signal_metrics(self, signals: Tensor, labels: Tensor | None) -> dict[str, float]:
        """Signals `[N, *info.shape]` with the labels they have or were asked for (`[N]`, or None
        for unlabelled data) -> named averages over the set; short names (table headers)."""
        ...


@runtime_checkable
class Tokenizer(Protocol):
    """A trainable map from model tensors to a grid of codebook indices and back.
    Constructed with `input_shape` (the modality's model shape) plus its recipe keywords."""

    name: ClassVar[str]
    train_defaults: ClassVar[dict[str, Any]]
    codebook_size: int
    grid_shape: tuple[int, ...]

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...

    def encode(self, x: Tensor) -> Tensor:
        """`[B, C, *spatial]` float to `[B, *grid_shape]` long."""
        ...

    def decode(self, tokens: Tensor) -> Tensor:
        """`[B, *grid_shape]` long to `[B, C, *spatial]` float."""
        ...


@runtime_checkable
class HasCodebook(Protocol):
    """Optional for tokenizers: the codebook vectors, for priors that work on them (continuous
    latent diffusion). The token cache stores them beside the tokens."""

    def codebook(self) -> Tensor:
        """`[K, D]` float, row k the vector that token k stands for."""
        ...


@runtime_checkable
class Prior(Protocol):
    """p(tokens | class) over a flattened sequence of `spec.seq_len` tokens. Constructed with
    `spec` (TokenSpec) plus its recipe keywords. Sampling options are the keyword-only
    parameters of `sample` after `generator`; they are validated like recipe keys."""

    name: ClassVar[str]
    likelihood: ClassVar[LikelihoodKind]
    train_defaults: ClassVar[dict[str, Any]]

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """`batch["tokens"]`: `[B, L]` long, `batch["labels"]`: `[B]` long."""
        ...

    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               **options: Any) -> Tensor:
        """Draw `[n, L]` tokens, conditioned on `labels` `[n]` when given."""
        ...

    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """Bits per token of each sequence, `[B]` (exact or an upper bound, see `likelihood`)."""
        ...

    def nfe(self, **options: Any) -> int:
        """Network evaluations one `sample` call costs with these options."""
        ...

    def check_options(self, **options: Any) -> None:
        """Raise ValueError for sampling options this prior cannot honour (more steps than
        tokens, say); called before any work starts."""
        ...


@runtime_checkable
class HasTrainFlops(Protocol):
    """Optional for priors: an analytic count of training compute, which the study map uses
    without running a step and the tests check against `diffvq.flops.counted_train_flops`
    (within 10 %). Priors without it are counted by running one step."""

    def train_flops(self, batch_size: int) -> int:
        """FLOPs of one training step (forward and backward, 2 per multiply-add, matrix
        products and attention) on `batch_size` sequences."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Tokens to signals in the modality's own format. Constructed with `modality` and
    `tokenizer` plus its recipe keywords."""

    name: ClassVar[str]

    def decode(self, tokens: Tensor) -> Tensor:
        """`[B, *grid_shape]` long to signals `[B, *info.shape]`."""
        ...


KINDS = ("modality", "dataset", "tokenizer", "prior", "decoder")
Kind = Literal["modality", "dataset", "tokenizer", "prior", "decoder"]

PROTOCOLS: dict[str, type] = {
    "modality": Modality, "dataset": Dataset, "tokenizer": Tokenizer, "prior": Prior,
    "decoder": Decoder,
}

# Constructor arguments the pipeline supplies; everything else in `__init__` is a recipe key.
INJECTED: dict[str, frozenset[str]] = {
    "modality": frozenset({"info"}),
    "dataset": frozenset(),
    "tokenizer": frozenset({"input_shape"}),
    "prior": frozenset({"spec", "codebook"}),  # codebook: only for priors that ask for it
    "decoder": frozenset({"modality", "tokenizer"}),
}

# `Prior.sample` arguments the pipeline supplies; the remaining keyword-only ones are options.
SAMPLE_INJECTED = frozenset({"self", "n", "labels", "generator"})
