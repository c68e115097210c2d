"""The block-diffusion prior: its two limits (block 1 is the autoregressive chain rule, block L
the masked prior's bound), the bound's estimator against its exact expectation, the block-causal
mask, cached against uncached sampling and the NFE, the FLOP count, options, the plugin."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from diffvq.builtin.autoregressive import AutoregressivePrior
from diffvq.builtin.masked_diffusion import MaskedDiffusionPrior
from diffvq.flops import counted_train_flops
from diffvq.interfaces import SAMPLE_INJECTED, HasTrainFlops, TokenSpec
from diffvq.plugins import load_plugins
from diffvq.schema import signature_model
from diffvq.trainer import Batches, TrainConfig, Trainer
from diffvq_blockdiff.prior import BlockDiffusionPrior, attention_mask

SIZE = dict(n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (see the multinomial plugin's tests)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(spec: TokenSpec, block_size: int, scramble: float = 0.0, **kw) -> BlockDiffusionPrior:
    """An untrained prior; `scramble` adds N(0, scramble^2) to every weight, so that its
    predictions are far from uniform and a leak or a lost normalisation would show."""
    torch.manual_seed(0)
    prior = BlockDiffusionPrior(spec, block_size=block_size, **(SIZE | kw))
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p), alpha=scramble)
    return prior.eval()


def train(prior, tokens, labels=None, steps=300, seed=0, batch_size=32, **kw):
    arrays = {"tokens": tokens} | ({"labels": labels} if labels is not None else {})
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=3e-3, warmup_steps=10, **kw)
    Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=seed,
            progress=False).fit(prior, Batches(arrays, batch_size, seed))
    return prior.eval()


def all_sequences(V: int, L: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=L)))  # [V^L, L]


@torch.no_grad()
def exact_bound(prior: BlockDiffusionPrior, tokens, labels=None) -> torch.Tensor:
    """The bound's expectation over its random masks, by enumeration, bits per token `[B]`:
    per block, sum over k = 1..n_b (probability 1/n_b) and over the C(n_b, k) masks of k of its
    tokens (each equally likely) of (n_b / k) * the masked tokens' -log p."""
    B, L = tokens.shape
    cond = prior.cond.tokens(labels, B, tokens.device)
    total = torch.zeros(B, dtype=torch.float64)
    for start, n_b in zip(prior.starts, prior.lengths):
        for k in range(1, n_b + 1):
            for chosen in itertools.combinations(range(start, start + n_b), k):
                mask = torch.zeros(L, dtype=torch.bool)
                mask[list(chosen)] = True
                logits = prior._train_logits(tokens.masked_fill(mask, prior.mask_id), tokens,
                                             cond).float()
                nats = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
                weight = (n_b / k) / math.comb(n_b, k) / n_b
                total += nats[:, mask].sum(dim=1).double() * weight
    return total / L / math.log(2)


# -- the block 1 limit: the autoregressive chain rule ---------------------------------------------
def test_block_one_is_a_normalised_distribution_with_an_exact_likelihood():
    """With blocks of one token every block is one fully masked token (k = 1 always): `nll`
    has no Monte-Carlo variance and is the chain rule of a normalised distribution, so the
    probabilities 2^(-L nll) of all 3^4 sequences sum to 1, per class and unconditionally. The
    weights are scrambled so that the model is far from uniform (a leak would show); the same
    model with every position seeing every other (noisy tokens their own clean copies) is
    not normalised, which is the check's power."""
    V, L = 3, 4
    prior = make(TokenSpec((L,), V, 2), block_size=1, scramble=0.3)
    seqs = all_sequences(V, L)
    for labels in (None, torch.zeros(len(seqs), dtype=torch.long),
                   torch.ones(len(seqs), dtype=torch.long)):
        torch.manual_seed(0)
        a = prior.nll(seqs, labels)
        torch.manual_seed(1)
        b = prior.nll(seqs, labels)
        assert torch.equal(a, b), "the block-1 bound must not depend on the random draws"
        p = 2.0 ** (-L * a.double())
        assert abs(float(p.sum()) - 1) < 1e-4, float(p.sum())
        assert float(p.max()) > 5 / len(seqs)  # far from uniform: the check means something
    assert torch.allclose(a.double(), exact_bound(prior, seqs, labels), atol=1e-5)
    prior.train_mask.fill_(True)  # a leak: every noisy token sees its clean copy
    leaky = 2.0 ** (-L * prior.nll(seqs, None).double())
    assert float(leaky.sum()) > 1.5


@pytest.fixture(scope="module")
def markov():
    """A first-order Markov chain over 4 tokens of length 6 with a known entropy rate: its
    training sequences, held-out ones, and their exact -log2 p per token (which averages to the
    entropy rate, 1.587 bits per token; 1.579 on this held-out sample)."""
    V, L = 4, 6
    g = torch.Generator().manual_seed(0)
    P = torch.softmax(2.0 * torch.randn(V, V, generator=g), -1).double()  # [V, V] rows sum to 1

    def draw(n):
        x = torch.empty(n, L, dtype=torch.long)
        x[:, 0] = torch.randint(0, V, (n,), generator=g)
        for t in range(1, L):
            x[:, t] = torch.multinomial(P[x[:, t - 1]], 1, generator=g).squeeze(1)
        return x

    train_set, held_out = draw(4096), draw(2048)
    log2p = math.log2(1 / V) + sum(P[held_out[:, t - 1], held_out[:, t]].log2()
                                   for t in range(1, L))
    return TokenSpec((L,), V, 0), train_set, held_out, (-log2p / L).float()


@pytest.fixture(scope="module")
def trained_on_markov(markov):
    """Each prior trained the same way (300 steps, batch 64, lr 3e-3 decayed to 0, seed 0, the
    same 2x32 model, so the masked prior and block L start from the same weights) on the Markov
    chain, with its held-out bits per token (nll seeded alike)."""
    spec, train_set, held_out, _ = markov
    out = {}
    makers = {
        "autoregressive": lambda: AutoregressivePrior(spec, **SIZE),
        "masked-elbo": lambda: MaskedDiffusionPrior(spec, **SIZE, loss="elbo", nll_samples=16),
        **{f"block-{b}": (lambda b=b: BlockDiffusionPrior(spec, block_size=b, **SIZE,
                                                          nll_samples=16)) for b in (1, 2, 6)},
    }
    for name, build in makers.items():
        torch.manual_seed(0)
        prior = train(build(), train_set, batch_size=64, min_lr_ratio=0.0)
        torch.manual_seed(0)
        out[name] = prior.nll(held_out, None)
    return out


def test_block_one_learns_what_the_autoregressive_prior_learns(markov, trained_on_markov):
    """Trained alike on a distribution of known entropy, block 1 and the autoregressive prior
    are both exact likelihoods, and both end within 0.01 bits per token of the true -log2 p of
    the same held-out sequences (paired: the difference is their KL from the truth, without the
    sampling noise of the held-out set), and within 0.005 of each other. Measured over training
    seeds 0-3: both 0.001-0.0024 above the truth, 0.0000-0.0006 apart; the tolerances are
    about four and eight times the largest."""
    *_, truth = markov
    ar, bd = trained_on_markov["autoregressive"], trained_on_markov["block-1"]
    for nll in (ar, bd):
        gap = nll - truth
        se = float(gap.std()) / math.sqrt(len(gap))
        assert -3 * se <= float(gap.mean()) <= 0.01, (float(gap.mean()), se)
    assert abs(float((bd - ar).mean())) < 0.005


def test_block_l_is_the_masked_priors_bound(markov, trained_on_markov):
    """With one block of L tokens the prior is the masked prior trained on its ELBO (the same
    estimator, the same network but for the class token, which here attends only to itself):
    trained alike from the same weights, their held-out bounds agree within four paired
    Monte-Carlo standard errors (~0.001) plus 0.04 bits, the training noise between them
    (measured over seeds 0-3: differences -0.015..+0.018 bits, sd 0.014; 0.04 is ~3 sd).
    Here the bound is a genuinely different figure from block 1's exact likelihood (gaps above
    the truth over seeds 0-3: block 1 0.001-0.002, block 2 0.018-0.040, block L 0.034-0.156):
    the bound loosens as the blocks grow, on a chain where each token depends on the one
    before."""
    *_, truth = markov
    full, masked = trained_on_markov["block-6"], trained_on_markov["masked-elbo"]
    diff = full - masked
    se = float(diff.std()) / math.sqrt(len(diff))
    assert abs(float(diff.mean())) <= 4 * se + 0.04, (float(diff.mean()), se)
    gaps = [float((trained_on_markov[f"block-{b}"] - truth).mean()) for b in (1, 2, 6)]
    assert gaps[0] < 0.01 and gaps[0] + 0.01 < gaps[1] and gaps[0] + 0.02 < gaps[2], gaps


# -- the estimator -------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [2, 4])
def test_the_bound_estimator_is_unbiased(block_size):
    """With untrained (scrambled) weights, the average of many one-draw estimates converges to
    the bound's exact expectation (enumerated over every k and mask): within 4 standard errors,
    which shrink as 1/sqrt(draws); the stratified estimator `nll` (8 draws) has the same mean
    and no larger a variance than 8 independent draws. The exact bound is no better than the
    model's likelihood can be: the probabilities 2^(-L bound) of all sequences sum to < 1
    (the bound averages over orders of a normalised mixture, Jensen)."""
    V, L = 3, 4
    prior = make(TokenSpec((L,), V, 0), block_size=block_size, scramble=0.3, nll_samples=1)
    seqs = all_sequences(V, L)
    exact = exact_bound(prior, seqs)  # [81]
    assert float((2.0 ** (-L * exact)).sum()) < 0.99
    x = seqs[[0, 5, 40, 80]]
    draws = 2000
    torch.manual_seed(0)
    one = prior.nll(x.repeat(draws, 1), None).view(draws, len(x)).double()  # [draws, 4]
    for n in (draws // 16, draws):
        mean, se = one[:n].mean(0), one[:n].std(0) / math.sqrt(n)
        assert ((mean - exact[[0, 5, 40, 80]]).abs() <= 4 * se).all(), (mean, exact, se)
    assert (one.std(0) / math.sqrt(draws) < 0.3 * one[:draws // 16].std(0) / math.sqrt(draws // 16)
            ).all()
    assert float(one.std(0).min()) > 0.01  # the draws really vary
    prior.nll_samples = 8
    torch.manual_seed(1)
    strat = prior.nll(x.repeat(draws // 8, 1), None).view(draws // 8, len(x)).double()
    se = strat.std(0) / math.sqrt(draws // 8)
    assert ((strat.mean(0) - exact[[0, 5, 40, 80]]).abs() <= 4 * se).all()
    # no worse than 8 independent draws (measured: 0.64-1.0 times their variance; a variance
    # estimate from 250 draws is itself uncertain by ~9 %)
    assert (strat.var(0) < 1.3 * one.var(0) / 8).all()


def test_training_minimises_one_draw_of_the_nll_estimator():
    """The training loss (nats) is `nll` with one draw (bits), from the same random numbers."""
    spec = TokenSpec((9,), 8, 2)
    prior = make(spec, block_size=4, scramble=0.1, nll_samples=1, cond_dropout=0.0)
    tokens = torch.randint(0, 8, (16, 9), generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 2
    torch.manual_seed(3)
    loss, logs = prior.training_loss({"tokens": tokens, "labels": labels})
    torch.manual_seed(3)
    bits = prior.nll(tokens, labels)
    assert float(loss.detach()) / math.log(2) == pytest.approx(float(bits.mean()), rel=1e-5)
    assert logs["bits_per_token"] == pytest.approx(float(loss.detach()) / math.log(2))


# -- the block-causal mask -----------------------------------------------------------------------
def test_attention_mask_pattern():
    """[class, noisy blocks of 2, clean blocks of 2] for L = 4: noisy block b sees the class,
    clean blocks < b and itself; clean block b the class and clean blocks <= b."""
    prior = make(TokenSpec((4,), 5, 0), block_size=2)
    c, n0, n1, k0, k1 = [0], [1, 2], [3, 4], [5, 6], [7, 8]
    sees = {0: c, 1: c + n0, 2: c + n0, 3: c + n1 + k0, 4: c + n1 + k0,
            5: c + k0, 6: c + k0, 7: c + k0 + k1, 8: c + k0 + k1}
    want = torch.zeros(9, 9, dtype=torch.bool)
    for q, keys in sees.items():
        want[q, keys] = True
    assert torch.equal(prior.train_mask, want)
    assert torch.equal(prior.train_positions, torch.tensor([0, 1, 2, 3, 4, 1, 2, 3, 4]))
    blocks, noisy = torch.tensor([-1, 0, 0]), torch.tensor([False, True, False])
    assert attention_mask(blocks, noisy, blocks, noisy).tolist() == [
        [True, False, False], [True, True, False], [True, False, True]]


def test_later_blocks_never_change_earlier_logits_and_a_block_sees_itself():
    """Block-causal over blocks (3 blocks of 3): changing block 2 (its clean and noisy copy)
    leaves the logits of blocks 0 and 1 exactly as they were, and changes block 2's; inside a
    block every position sees every other (an unmasked token changes the logits of all the
    block's other positions); a noisy block sees the clean blocks before it, but not its own
    clean copy."""
    L, V = 9, 6
    prior = make(TokenSpec((L,), V, 2), block_size=3, scramble=0.3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (4, L), generator=g)
    mask = torch.zeros(L, dtype=torch.bool)
    mask[[0, 2, 4, 5, 6, 8]] = True  # block 0: 1 visible, block 1: 3, block 2: 7
    cond = prior.cond.tokens(torch.tensor([0, 1, 0, 1]), 4, tokens.device)

    def logits(t, noisy=None):
        noisy = t.masked_fill(mask, prior.mask_id) if noisy is None else noisy
        with torch.no_grad():
            return prior._train_logits(noisy, t, cond)  # [B, L, K]

    base = logits(tokens)
    later = tokens.clone()
    later[:, 6:] = (later[:, 6:] + 1) % V
    changed = logits(later)
    assert torch.equal(changed[:, :6], base[:, :6]), "a later block reached an earlier one"
    assert (changed[:, 6:] - base[:, 6:]).abs().amax(dim=-1).min() > 1e-4
    inside = tokens.clone()
    inside[:, 3] = (inside[:, 3] + 1) % V  # the visible token of block 1
    changed = logits(inside)
    assert (changed[:, [4, 5]] - base[:, [4, 5]]).abs().amax(dim=-1).min() > 1e-4
    assert (changed[:, 6:] - base[:, 6:]).abs().amax(dim=-1).min() > 1e-4  # clean block 1
    assert torch.equal(changed[:, :3], base[:, :3])
    own_clean = tokens.clone()
    own_clean[:, 3:6] = (own_clean[:, 3:6] + 1) % V  # block 1's clean copy only
    changed = logits(own_clean, noisy=tokens.masked_fill(mask, prior.mask_id))
    assert torch.equal(changed[:, 3:6], base[:, 3:6]), "a noisy block saw its own clean copy"


# -- sampling ------------------------------------------------------------------------------------
def count_calls(prior) -> list[int]:
    """Network evaluations: the final norm runs once per call of the transformer (as the
    contract test counts them)."""
    calls = [0]
    prior.net.ln_f.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("block_size,steps", [(1, 1), (3, 2), (3, 3), (7, 4), (10, 7)])
def test_cached_sampling_is_uncached_sampling_at_the_nfe_reported(block_size, steps):
    """The key/value cache of finished blocks changes nothing but the cost: the same tokens
    from the same generator (two guidance streams, one, and none); and `nfe` is the number of
    network evaluations made on either path, sum over blocks of min(steps, n_b) (L = 7: blocks
    3, 3, 1 take 2 + 2 + 1 passes at steps 2)."""
    spec = TokenSpec((7,), 6, 3)
    prior = make(spec, block_size=block_size, scramble=0.3)
    calls = count_calls(prior)
    want = torch.tensor([0, 1, 2, 1])
    for labels, guidance in [(want, 2.0), (want, 1.0), (None, 3.0)]:
        out = {}
        for use_cache in (True, False):
            calls[0] = 0
            out[use_cache] = prior.sample(4, labels, generator=torch.Generator().manual_seed(5),
                                          steps=steps, guidance=guidance, use_cache=use_cache,
                                          temperature=2.0, min_p=0.0)
            assert calls[0] == prior.nfe(steps=steps), (use_cache, calls[0])
        assert torch.equal(out[True], out[False]), (labels, guidance)
        assert out[True].shape == (4, 7) and int(out[True].max()) < 6  # no MASK left
    lengths = [min(block_size, 7 - start) for start in range(0, 7, block_size)]
    assert prior.nfe(steps=steps) == sum(min(steps, n) for n in lengths)


def test_samples_follow_the_model_one_token_per_step():
    """Sampled one token per step in random order, block diffusion is ancestral sampling of its
    own model, q(x) = the average over orders within each block of the chain rule in that
    order. 2^(-L bound(x)) is the geometric average of the same chain rules, so it lies below
    q(x), by 1 - sum_x 2^(-L bound(x)) in all: on a trained prior, the samples' frequencies of
    the likeliest sequences lie between 2^(-L bound) and that plus the missing mass (4 standard
    errors of slack). Measured: 0.497, 0.237, 0.068, 0.060 against 0.499, 0.232, 0.064, 0.054,
    missing mass 0.025."""
    V, L = 3, 3
    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([8.0, 4, 2, 1, 1, 1])
    pool = torch.randint(0, V, (6, L), generator=g)
    tokens = pool[torch.multinomial(weights, 2048, replacement=True, generator=g)]
    prior = train(BlockDiffusionPrior(TokenSpec((L,), V, 0), block_size=2, **SIZE), tokens,
                  steps=200)
    out = prior.sample(2000, None, generator=torch.Generator().manual_seed(1), steps=2,
                       order="random", min_p=0.0)
    seqs = all_sequences(V, L)
    counts = (out[:, None, :] == seqs).all(-1).sum(0).double() / len(out)  # [27]
    model = 2.0 ** (-L * exact_bound(prior, seqs))  # <= the model's own probabilities
    top = model.argsort(descending=True)[:4]
    se = (model[top] * (1 - model[top]) / len(out)).sqrt()
    missing = 1 - float(model.sum())
    assert 0 < missing < 0.1
    assert ((counts[top] - model[top]) >= -4 * se).all(), (counts[top], model[top])
    assert ((counts[top] - model[top]) <= 4 * se + missing).all(), (counts[top], model[top])


def test_steps_are_per_block_and_may_not_exceed_the_longest():
    prior = BlockDiffusionPrior(TokenSpec((3, 3), 8, 2), block_size=4, n_layer=1, n_head=1,
                                n_embd=8)  # blocks of 4, 4, 1
    prior.check_options(steps=4)
    with pytest.raises(ValueError, match=r"steps \(5\) exceeds the block length \(4\)"):
        prior.check_options(steps=5)
    assert prior.steps_per_block(3) == [3, 3, 1] and prior.nfe(steps=3) == 7
    long = BlockDiffusionPrior(TokenSpec((5,), 8, 0), block_size=16, n_layer=1, n_head=1,
                               n_embd=8)  # one block of 5
    assert long.lengths == [5]
    with pytest.raises(ValueError, match="steps"):
        long.check_options(steps=8)  # the default: a sequence shorter than it needs fewer


# -- training compute ----------------------------------------------------------------------------
@pytest.mark.parametrize("size,seq,block", [(dict(n_layer=1, n_head=2, n_embd=32), (9,), 4),
                                            (dict(n_layer=3, n_head=4, n_embd=64), (4, 4), 16)])
def test_train_flops_match_the_counted_flops(size, seq, block):
    prior = BlockDiffusionPrior(TokenSpec(seq, 16, 3), block_size=block, **size)
    assert isinstance(prior, HasTrainFlops)
    L = math.prod(seq)
    batch = {"tokens": torch.randint(0, 16, (8, L)), "labels": torch.arange(8) % 3}
    counted = counted_train_flops(prior, batch)
    assert abs(prior.train_flops(8) / counted - 1) < 0.10, (prior.train_flops(8), counted)


# -- the plugin ----------------------------------------------------------------------------------
def test_registered_through_the_entry_point_with_its_schema():
    entry = load_plugins().registry.entries["prior"]["block-diffusion"]
    assert entry.cls is BlockDiffusionPrior
    options = signature_model(BlockDiffusionPrior.sample, SAMPLE_INJECTED)().model_dump()
    assert options["steps"] == 8 and options["guidance"] == 3.0 and options["use_cache"]
