"""Training compute: floating-point operations per training step, counted and predicted.

The map of loss against compute (Prabhudesai et al. 2025; Kaplan et al. 2020) needs one currency
for every prior. `counted_train_flops` runs one training step under PyTorch's `FlopCounterMode`
(matrix products and attention, 2 FLOPs per multiply-add, forward plus backward), so it works for
any plugin's prior without its help. `transformer_train_flops` is the analytic count of the shared
backbone (nanoGPT/Chinchilla style: 6 N per token for the matmuls plus attention), which priors
built on it expose as `train_flops(batch_size)` and the tests check against the counter.

PyTorch's counter has no formula for the CPU flash-attention kernel, so on CPU it would count no
attention at all; `COUNTED_ATTENTION` adds the same formulas the counter uses for the CUDA kernels.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter as fc

from .interfaces import HasTrainFlops
from .nn.transformer import TransformerConfig


def _cpu_flash_forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return fc.sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                        **kwargs: Any) -> int:
    return fc.sdpa_backward_flop_count(grad_out, query, key, value)


COUNTED_ATTENTION: dict[Any, Any] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def counted_flops(fn: Any) -> int:
    """FLOPs of the matrix products and attention `fn()` runs (forward and, if it calls
    `backward`, backward), as `FlopCounterMode` counts them."""
    with fc.FlopCounterMode(display=False, custom_mapping=COUNTED_ATTENTION) as counter:
        fn()
    return int(counter.get_total_flops())


def counted_train_flops(module: nn.Module, batch: dict[str, Tensor]) -> int:
    """FLOPs of one training step (loss, backward) of `module` on `batch`, counted by running it
    on a copy, with the random generators restored afterwards: a first step that initialises
    state (a codebook's k-means start) or moves buffers (EMA codebooks) happens to the copy, so
    counting changes nothing that training does next."""
    copy = deepcopy(module).train()
    devices = [batch[k].device for k in batch if batch[k].is_cuda]
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        def step() -> None:
            loss, _ = copy.training_loss(batch)
            loss.backward()
        return counted_flops(step)


def step_flops(module: nn.Module, batch: dict[str, Tensor]) -> dict[str, int | None]:
    """What one training step on `batch` costs: the module's own count where it has one
    (`HasTrainFlops`, used) and the counter's (recorded beside it)."""
    counted = counted_train_flops(module, batch)
    analytic = module.train_flops(len(batch["tokens"])) if isinstance(module, HasTrainFlops) \
        else None
    return {"flops_per_step": int(analytic if analytic is not None else counted),
            "flops_per_step_counted": counted, "flops_per_step_analytic": analytic}


def transformer_forward_flops(cfg: TransformerConfig, batch: int, tokens: int | None = None,
                              outputs: int | None = None) -> int:
    """Forward FLOPs of the shared backbone on `batch` sequences of `tokens` positions (default
    `cfg.seq_len`), with the output head applied at `outputs` positions (default all): per layer
    and position 24 C^2 for the projections and 4 T C for attention scores and values; the head
    2 C V per position it is applied at."""
    T = cfg.seq_len if tokens is None else tokens
    C = cfg.n_embd
    per_layer = 24 * C * C * T + 4 * T * T * C
    head = 2 * C * cfg.out_size * (T if outputs is None else outputs)
    return batch * (cfg.n_layer * per_layer + head)


def transformer_train_flops(cfg: TransformerConfig, batch: int, tokens: int | None = None,
                            outputs: int | None = None) -> int:
    """One training step: the forward pass and a backward pass of twice its cost for the
    matrix products, 2.5 times for attention (its scores are recomputed, as PyTorch counts)."""
    T = cfg.seq_len if tokens is None else tokens
    attention = batch * cfg.n_layer * 4 * T * T * cfg.n_embd
    return 3 * transformer_forward_flops(cfg, batch, tokens, outputs) + attention // 2
