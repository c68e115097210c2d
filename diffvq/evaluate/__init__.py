"""The evaluation protocol (`docs/protocol.md`), in one place: the `Evaluator` computes every
figure of `metrics.json` from a finished run's stages.

    evaluator   the Evaluator: floor rows, tokenizer figures, per-prior figures
    judged      figures in a judge's feature space: FD, accuracy, precision/recall, floor sets
    likelihood  held-out NLL in float32 with its standard error, per token and per dimension

Imports the contract, the judge, stats and storage; only the pipeline imports it.
"""

from .evaluator import SAMPLING_KEYS, Evaluator, RunView

__all__ = ["SAMPLING_KEYS", "Evaluator", "RunView"]
