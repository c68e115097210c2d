"""A study read back: every cell's validation curve as points on the map, the sample quality
and copying of each cell's best and final weights, the crossover of each diffusion prior with
the autoregressive reference per data fraction (both readings), where each prior starts to
overfit, and the picture (`study/map.png`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .. import storage
from ..evaluate.crossover import CurvePoint, crossover, epochs_to_best
from ..evaluate.map_plot import QualityPoint, draw_map
from ..intervals import kid_interval
from ..memorisation import copy_reference
from ..stages import derived_seed
from .cells import Cell, subset

if TYPE_CHECKING:
    from ..evaluate.evaluator import Evaluator
    from ..evaluate.judged import JudgeEvaluation

MAP_FILE = "map.png"
READINGS = ("frontier", "equal-budget")


def curve_points(curve: dict[str, Any]) -> list[CurvePoint]:
    """A cell's validation curve as map points; the last is the cell's equal-budget point."""
    # The run's schedule ends at its budget: the nominal one (runs of one budget are paired),
    # or, for budgets in epochs, the compute it came to. Steps are whole, so a run spends its
    # FLOPs budget to within one step; its points sit at their share of the budget, so that all
    # runs of one budget end at the same compute (else the map's common range would end at the
    # cheapest run's last step and leave the others' final points out).
    nominal = curve["unit"] == "flops"
    budget = float(curve["budget"] if nominal else curve["flops"])
    return [CurvePoint(prior=curve["prior"], family=curve["family"],
                       fraction=float(curve["fraction"]), size=curve["size"],
                       seed=int(curve["seed"]), budget=budget,
                       flops=budget * int(p["step"]) / int(curve["steps"]) if nominal
                       else float(p["flops"]),
                       epochs=float(p["epochs"]), loss=float(p["loss"]),
                       se=float(p["se"]) if p["se"] == p["se"] else 0.0,
                       final=int(p["step"]) == int(curve["steps"]))
            for p in curve["points"]]


class StudyResults:
    """Reads a finished study's cells and measures what the map needs."""

    def __init__(self, ev: Evaluator, jev: JudgeEvaluation | None, log: Callable[[str], None]):
        self.ev, self.run, self.jev, self.log = ev, ev.run, jev, log
        self.study = self.run.recipe.study
        assert self.study is not None
        self._copies: dict[float, Any] = {}

    def metrics(self, cells: list[Cell]) -> dict[str, Any]:
        run, s = self.run, self.study
        curves = {c: storage.read_json(run.run_dir / c.path / "curve.json") for c in cells}
        points = [p for c in cells for p in curve_points(curves[c])]
        rows = [self.cell_row(c, curves[c]) for c in cells]
        crossings = []  # Crossover objects, both readings
        for f in s.section.data_fractions:
            ref = [p for p in points if p.fraction == f and p.prior == s.reference]
            for k in s.priors:
                other = [p for p in points if p.fraction == f and p.prior == k]
                if k == s.reference or not ref or not other:
                    continue
                # budgets in epochs give each prior its own compute: no equal-budget pairs
                for reading in READINGS if s.unit == "flops" else READINGS[:1]:
                    x = crossover(ref, other, reading=reading,
                                  seed=derived_seed(run.recipe.seed, "crossover"))
                    crossings.append(x)
                    if reading == "frontier":
                        self.log(f"study, fraction {f:g}, {k} against {s.reference}: "
                                 f"{x.statement}")
        quality = [QualityPoint(prior=r["prior"], fraction=r["fraction"], flops=q["flops"],
                                value=q["kid"]["value"], lo=q["kid"]["lo"], hi=q["kid"]["hi"],
                                label="judge KID (validation)", point=which)
                   for r in rows for which, q in (r["quality"] or {}).items() if q.get("kid")]
        unique = {r["fraction"]: r["unique_sequences"] for r in rows}
        out_png = run.run_dir / "study" / MAP_FILE
        draw_map(points, [x for x in crossings if x.reading == "frontier"], quality, out_png,
                 title=f"{run.recipe.name}: validation loss against training compute",
                 unique=unique, seed=derived_seed(run.recipe.seed, "crossover"))
        return {"unit": s.unit, "budgets": s.budgets, "fractions": s.section.data_fractions,
                "sizes": list(s.section.model_sizes), "priors": s.priors,
                "reference": s.reference, "families": {k: run.recipe.priors[k].cls.likelihood
                                                       for k in s.priors},
                "unique_sequences": {str(f): n for f, n in unique.items()},
                "cells": rows, "crossovers": [x.to_dict() for x in crossings],
                "epochs_to_best": [asdict(r) for r in epochs_to_best(points)],
                "map": str(out_png.relative_to(run.run_dir))}

    # -- one cell -----------------------------------------------------------------------------
    def cell_row(self, cell: Cell, curve: dict[str, Any]) -> dict[str, Any]:
        keep = ("prior", "name", "family", "fraction", "size", "budget", "unit", "seed",
                "unique_sequences", "unique_tokens", "batch_size", "steps", "parameters",
                "flops_per_step", "flops_per_step_counted", "flops_per_step_analytic", "flops",
                "tokens_seen", "epochs", "train_wall_s", "wall_s", "best")
        row = {k: curve.get(k) for k in keep}
        row["path"] = str(cell.path)
        row["final"] = curve["points"][-1] if curve["points"] else None
        row["quality"] = self.quality(cell, curve) if curve.get("samples") else None
        return row

    @torch.no_grad()
    def quality(self, cell: Cell, curve: dict[str, Any]) -> dict[str, Any]:
        """Judge KID against the validation split (95 % bootstrap interval over samples) and the
        copy shares against the cell's own training subset, for its best and final weights."""
        run, jev = self.run, self.jev
        d = run.run_dir / cell.path
        kw = {"resamples": run.recipe.evaluate.bootstrap,
              "seed": derived_seed(run.recipe.seed, "bootstrap")}
        copies, train_tokens, train_features = self.copies(cell.fraction)
        out = {}
        for which, name in curve["samples"]["files"].items():
            tokens = storage.load_array(d / name)  # [n, L]
            at = curve["best"] if which == "best" else curve["points"][-1]
            row: dict[str, Any] = {"flops": at["flops"], "epochs": at["epochs"],
                                   "step": at["step"], "loss": at["loss"]}
            grids = tokens.reshape(1, len(tokens), *self.ev.cache.spec.grid_shape)  # one set
            if jev is not None and "validation" in jev.real:
                signals = run.decode(self.ev.tokenizer, torch.from_numpy(grids[0]))
                feats = jev.features([run.modality.to_model(signals)])[0]
                row["kid"] = kid_interval([feats], jev.real["validation"].kernel, **kw).to_dict()
            row["memorisation"] = self.ev.memorisation(jev, grids, train_tokens, copies,
                                                       train_features)
            out[which] = row
        return out

    def copies(self, fraction: float) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """The copy reference of a fraction's training subset (held against the validation
        split, which none of the cells trained on), made once per fraction."""
        if fraction not in self._copies:
            cache, jev = self.ev.cache, self.jev
            train_all = cache.sequences("train")
            train = np.asarray(train_all[subset(len(train_all), fraction, self.run.recipe.seed)])
            held = np.asarray(cache.sequences("validation"))
            grid = cache.spec.grid_shape
            train_f = held_f = None
            if jev is not None:
                train_f = self.ev.token_features(jev, train.reshape(len(train), *grid))
                held_f = self.ev.token_features(jev, held.reshape(len(held), *grid))
            ref = copy_reference(train, held, train_f, held_f,
                                 quantile=self.run.recipe.evaluate.copy_quantile)
            self._copies[fraction] = (ref, train, train_f)
        return self._copies[fraction]

