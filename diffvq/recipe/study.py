"""The `study:` section: one recipe, many trainings, drawn as a map.

A study crosses unique-data fractions, model sizes, training budgets and seeds for each of its
priors; every combination is a *cell*, one training run with a validation curve and its own
fingerprint, so a study resumes, reuses finished cells and grows when a value is added
(`diffvq.study`). The question it answers (Prabhudesai et al. 2025; Ni et al. 2025): at which
training compute does a diffusion prior's validation loss fall below the autoregressive one's,
on how much unique data?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import schema
from ..interfaces import INJECTED

if TYPE_CHECKING:
    from .resolve import PriorSpec

SizeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=40)]


class StudySection(BaseModel):
    """`study:` - what to cross, and how each training is measured."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    priors: list[str] | None = Field(None, min_length=1, description="prior keys in the study; "
                                     "null: every prior of the recipe")
    reference: str | None = Field(None, description="the prior with an exact likelihood the others "
                                  "are compared with; null: the first such prior")
    data_fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        [1.0], min_length=1, max_length=20, description="shares of the training split (nested "
        "subsets: a smaller one is part of every larger one)")
    model_sizes: dict[SizeName, dict[str, Any]] = Field(
        {"base": {}}, min_length=1, max_length=10, description="name -> prior keys it overrides "
        "(n_layer, n_embd, ...), applied to every prior of the study")
    budget_flops: list[Annotated[float, Field(gt=0, le=1e24)]] | None = Field(
        None, min_length=1, max_length=10, description="training FLOPs per run; each a separate "
        "run whose schedule ends there")
    budget_epochs: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        None, min_length=1, max_length=10, description="or: passes over each run's unique data")
    seeds: int = Field(3, ge=1, le=20, description="training seeds per cell (the crossover's "
                       "interval is a bootstrap over them)")
    evaluations: int = Field(8, ge=2, le=64, description="validation points per run, "
                             "geometrically spaced in steps, the last at the end")
    validation_sequences: int | None = Field(None, gt=0, description="cap on validation "
                                             "sequences per point; null: all")
    quality_per_class: int = Field(10, ge=0, le=10_000, description="samples per class drawn "
                                   "from each run's best and final weights for the judge "
                                   "distance and copy counts; 0: none")
    compare: bool = Field(False, description="also run the single-point comparison "
                          "(priors trained with train.prior, sampled, judged) beside the study")

    @model_validator(mode="after")
    def _one_budget(self) -> StudySection:
        if (self.budget_flops is None) == (self.budget_epochs is None):
            raise ValueError("give exactly one of budget_flops or budget_epochs")
        return self


@dataclass
class Study:
    """A validated study: the section, its priors in order, the reference, and each prior's
    parameters at each model size."""

    section: StudySection
    priors: list[str]
    reference: str
    params: dict[tuple[str, str], dict[str, Any]]  # (prior key, size) -> constructor keywords

    @property
    def unit(self) -> str:
        return "flops" if self.section.budget_flops is not None else "epochs"

    @property
    def budgets(self) -> list[float]:
        return list(self.section.budget_flops or self.section.budget_epochs or [])

    def to_dict(self) -> dict[str, Any]:
        return self.section.model_dump(mode="json")


def resolve_study(raw: Any, priors: dict[str, PriorSpec], problems: list[str]) -> Study | None:
    """Validate `study:` against the recipe's priors; problems are appended, one line each."""
    section, errs = schema.validate(StudySection, raw if isinstance(raw, dict) else {}, "study")
    if not isinstance(raw, dict):
        errs = [f"study: must be a mapping (got {raw!r})"]
    problems.extend(errs)
    if section is None or errs:
        return None
    s = StudySection.model_validate(section)
    keys = s.priors if s.priors is not None else list(priors)
    ok = True
    for k in keys:
        if k not in priors:
            problems.append(f"study.priors: {k!r} is not a prior of this recipe "
                            f"({', '.join(priors) or 'none'})")
            ok = False
    if len(set(keys)) != len(keys):
        problems.append("study.priors: a prior is listed twice")
        ok = False
    for k in keys if ok else []:
        if getattr(priors[k].cls, "likelihood", "none") not in ("exact", "bound"):
            problems.append(f"study.priors: {k!r} ({priors[k].name}) reports no likelihood, so "
                            f"it has no validation loss to draw; leave it out of study.priors")
            ok = False
    if not ok:
        return None
    exact = [k for k in keys if getattr(priors[k].cls, "likelihood", "none") == "exact"]
    reference = s.reference if s.reference is not None else (exact[0] if exact else None)
    if reference is None:
        problems.append("study.reference: the study needs a prior with an exact likelihood "
                        "(an autoregressive one) to compare the others with")
        return None
    if reference not in keys:
        problems.append(f"study.reference: {reference!r} is not one of the study's priors "
                        f"({', '.join(keys)})")
        return None
    if reference not in exact:
        problems.append(f"study.reference: {reference!r} ({priors[reference].name}) has no exact "
                        f"likelihood; the reference must be autoregressive")
        return None
    if len(keys) < 2:
        problems.append("study.priors: a study compares at least two priors")
        return None
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for k in keys:
        p = priors[k]
        model = schema.signature_model(p.cls.__init__, INJECTED["prior"])
        for size, overrides in s.model_sizes.items():
            resolved, errs = schema.validate(model, {**p.params, **overrides},
                                             f"study.model_sizes.{size}")
            problems.extend(f"{e} (prior {k!r}, {p.name})" for e in errs)
            if resolved is not None:
                params[(k, size)] = resolved
    if len(params) != len(keys) * len(s.model_sizes):
        return None
    return Study(s, keys, reference, params)
