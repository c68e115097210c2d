"""The autoregressive prior and the shared transformer: cache, sampling filters, learning."""

from __future__ import annotations

import math

import pytest
import torch

from diffvq.builtin.autoregressive import AutoregressivePrior
from diffvq.interfaces import TokenSpec
from diffvq.nn.sampling import filter_logits
from diffvq.nn.transformer import Transformer, TransformerConfig
from diffvq.trainer import Batches, TrainConfig, Trainer


def test_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=20, out_size=20, seq_len=12, n_layer=2, n_head=2,
                            n_embd=16)
    net = Transformer(cfg).eval()
    idx = torch.randint(0, 20, (3, 12))
    full = net(idx)
    cache = net.new_cache(3)
    parts = [net(idx[:, :5], cache)] + [net(idx[:, i:i + 1], cache) for i in range(5, 12)]
    # The cached path multiplies matrices of other shapes (other kernels, other summation
    # orders). Per layer the longest sums are the MLP's (4 * n_embd terms) and attention's
    # (seq_len keys), over layer-normed O(1) activations: allow float32 eps times those terms,
    # per layer (2e-5 here; measured 0 to 5e-8 on x86-64).
    terms = cfg.n_layer * (4 * cfg.n_embd + cfg.seq_len)
    rounding = torch.finfo(torch.float32).eps * terms * max(1.0, full.abs().max().item())
    assert (torch.cat(parts, dim=1) - full).abs().max() <= rounding


def test_bidirectional_switch_sees_the_future():
    torch.manual_seed(0)
    cfg = dict(vocab_size=10, out_size=10, seq_len=6, n_layer=1, n_head=2, n_embd=8)
    causal = Transformer(TransformerConfig(**cfg, causal=True)).eval()
    bidir = Transformer(TransformerConfig(**cfg, causal=False)).eval()
    bidir.load_state_dict(causal.state_dict())
    a, b = torch.zeros(1, 6, dtype=torch.long), torch.zeros(1, 6, dtype=torch.long)
    b[0, -1] = 3  # change only the last token
    assert torch.allclose(causal(a)[0, 0], causal(b)[0, 0])  # the first position cannot see it
    assert not torch.allclose(bidir(a)[0, 0], bidir(b)[0, 0])


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=1.0)).sum() == 0


def patterns(n_classes: int, L: int, K: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, K, (n_classes, 2, L), generator=g)  # two fixed patterns per class


def train(prior, tokens, labels, steps=200):
    cfg = TrainConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=10)
    arrays = {"tokens": tokens, "labels": labels}
    return Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=0,
                   progress=False).fit(prior, Batches(arrays, 32, 0))


def test_learns_class_patterns_and_samples_them():
    spec = TokenSpec((3, 3), vocab_size=12, n_classes=3)
    pats = patterns(3, 9, 12)
    labels = torch.arange(3).repeat_interleave(64)
    choice = torch.arange(192) % 2
    tokens = pats[labels, choice]  # [192, 9]
    torch.manual_seed(0)
    prior = AutoregressivePrior(spec, n_layer=2, n_head=2, n_embd=32, cond_dropout=0.1)
    result = train(prior, tokens, labels)
    assert result.losses[-1][1] < 0.1 * result.losses[0][1]
    want = torch.tensor([0, 1, 2, 2, 1, 0])
    gen = torch.Generator().manual_seed(0)
    out = prior.sample(6, want, generator=gen, guidance=1.0)
    for tok, c in zip(out, want):
        assert any(torch.equal(tok, p) for p in pats[c]), (tok, pats[c])
    assert prior.nfe() == 9
    # the exact NLL of held-out sequences from the same two-pattern mixture is ~1 bit / 9 tokens
    nll = prior.nll(tokens[:12], labels[:12])
    assert nll.shape == (12,)
    assert float(nll.mean()) == pytest.approx(1 / 9, abs=0.1)


def test_nll_of_uniform_tokens_approaches_their_entropy():
    spec = TokenSpec((8,), vocab_size=16, n_classes=0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (2048, 8), generator=g)
    held_out = torch.randint(0, 16, (512, 8), generator=g)
    torch.manual_seed(0)
    prior = AutoregressivePrior(spec, n_layer=1, n_head=2, n_embd=16)
    train(prior, tokens, torch.zeros(2048, dtype=torch.long), steps=150)
    nll = float(prior.nll(held_out, None).mean())
    entropy = math.log2(16)
    assert entropy - 0.02 <= nll <= entropy + 0.1


def test_cached_and_uncached_sampling_agree():
    spec = TokenSpec((2, 3), vocab_size=8, n_classes=2)
    torch.manual_seed(0)
    prior = AutoregressivePrior(spec, n_layer=1, n_head=2, n_embd=16).eval()
    labels = torch.tensor([0, 1, 1])
    a = prior.sample(3, labels, generator=torch.Generator().manual_seed(5), guidance=2.0)
    b = prior.sample(3, labels, generator=torch.Generator().manual_seed(5), guidance=2.0,
                     use_cache=False)
    assert torch.equal(a, b)
    assert a.shape == (3, 6) and a.max() < 8
