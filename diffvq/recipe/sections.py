"""The sections of a recipe that diffvq itself defines (components define their own, through
their typed signatures)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..runtime import DeviceName, Precision

class SampleSection(BaseModel):
    """`sample:` - how many samples and, as extra keys, options passed to every prior."""

    model_config = ConfigDict(extra="allow")
    n_per_class: int = Field(8, gt=0, description="samples per class (unlabelled data: in all)")
    batch_size: int = Field(64, gt=0, description="samples drawn per sampler call (the "
                                                   "throughput regime is timed at this size)")
    seeds: int = Field(3, gt=0, description="sampling seeds; judge FD is mean ± std over them")
    latency_samples: int = Field(5, ge=0, description="one-at-a-time sampler calls timed, warm "
                                                      "(at least 5 when on); 0: not timed")
    gallery_per_class: int = Field(10, gt=0, description="samples per class in the gallery")
    measure_memory: bool = Field(True, description="peak tensor memory of one sampler call")


class EvaluateSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nll: bool = True
    nll_max_sequences: int | None = Field(None, gt=0, description="cap on held-out sequences")
    judge: bool = Field(True, description="judge FD, accuracy, precision/recall (labelled data "
                                          "of a modality with a judge)")
    judge_steps: int | None = Field(None, gt=0, description="judge training steps; null: the "
                                                            "modality's default")
    k: int = Field(3, gt=0, description="neighbours of the k-NN precision/recall manifolds")
    bootstrap: int = Field(200, ge=20, le=100_000, description="bootstrap resamples of every "
                           "quality figure's 95 % interval (over seeds and samples)")
    copy_quantile: float = Field(0.05, gt=0, lt=0.5, description="a near-copy is closer to its "
                                 "nearest training example than this share of held-out data")
    max_reconstructions: int | None = Field(
        1000, gt=0, description="test signals (evenly spaced over the split) decoded through the "
        "tokenizer for reconstruction metrics and the judge's accuracy on reconstructions; "
        "null: all (audio decodes by Griffin-Lim, about 0.1 s a 2 s clip on 2 cores)")


class TrainSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokenizer: dict[str, Any] = {}
    prior: dict[str, Any] = {}


class RecipeModel(BaseModel):
    """The top level of a recipe."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="run directory name under runs/")
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**32, description="a 32-bit unsigned integer")
    modality: str | dict[str, Any]
    data: str | dict[str, Any]
    tokenizer: str | dict[str, Any]
    decoder: str | dict[str, Any] = "tokenizer"
    priors: dict[str, str | dict[str, Any]] = Field(min_length=1)
    train: TrainSection = TrainSection()
    sample: SampleSection = SampleSection()
    evaluate: EvaluateSection = EvaluateSection()
    study: dict[str, Any] | None = Field(None, description="a map over data, size and compute "
                                         "(diffvq.recipe.study)")
    plugins: list[str] = []
    device: DeviceName = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(None, ge=1, le=4096, description="CPU threads for torch; null: "
                                "$DIFFVQ_THREADS, else half the physical cores")
    environment: dict[str, Any] | None = Field(None, description="written by diffvq; ignored")

