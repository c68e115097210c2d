"""Atomic files, safe checkpoint loading and component round trips."""

from __future__ import annotations

import pickle

import pytest
import torch

from diffvq import storage
from diffvq.components import load_component, save_component
from diffvq.errors import UserError
from diffvq.interfaces import TokenSpec


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.json"
    storage.write_json(path, {"v": 1})

    def fail(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        storage.atomic_save(path, fail)
    assert storage.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


class Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('executed!')",))


def test_training_state_never_executes_code(tmp_path):
    path = tmp_path / "optimizer.pt"
    path.write_bytes(pickle.dumps({"state": Evil()}, protocol=2))
    with pytest.raises(UserError, match="not a diffvq training state"):
        storage.load_state(path)


def test_weights_that_are_not_safetensors_are_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        storage.load_weights(path)


def test_component_round_trip_and_mismatched_checkpoint(tmp_path, plugins):
    cls = plugins.registry.entries["prior"]["autoregressive"].cls
    spec = TokenSpec((2, 3), 16, 4)
    prior = cls(spec=spec, n_layer=1, n_head=2, n_embd=16)
    save_component(tmp_path / "p", prior, "prior", "autoregressive",
                   {"n_layer": 1, "n_head": 2, "n_embd": 16}, {"spec": spec})
    back = load_component(tmp_path / "p", plugins.registry, "prior")
    for (k, a), (_, b) in zip(prior.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    # weights of another model under the same config: refused with the reason, not a traceback
    other = cls(spec=spec, n_layer=2, n_head=2, n_embd=16)
    storage.save_weights(tmp_path / "p" / "model.safetensors", other.state_dict())
    with pytest.raises(UserError, match="weights do not match prior 'autoregressive'"):
        load_component(tmp_path / "p", plugins.registry, "prior")
    with pytest.raises(UserError, match="holds a prior, expected a tokenizer"):
        load_component(tmp_path / "p", plugins.registry, "tokenizer")
