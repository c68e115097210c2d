"""audio-folder's train / validation / test: a file's clip is in one split only, validation is
carved from the train files per class, the same whatever the order of loading."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from diffvq.interfaces import SPLITS
from diffvq_audio.datasets import AudioFolder


def write_tones(root, per_class: int = 10) -> dict[int, str]:
    """Two classes of `per_class` files; file k is a tone of amplitude (k + 1) / 100, its
    identity in the loaded clip. Returns amplitude id -> file name."""
    names = {}
    t = np.arange(4096) / 16000
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir()
        for i in range(per_class):
            k = c * per_class + i
            sf.write(root / cls / f"{i:02d}.wav",
                     ((k + 1) / 100 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000,
                     subtype="FLOAT")
            names[k] = f"{cls}/{i:02d}.wav"
    return names


def file_ids(x: torch.Tensor) -> list[int]:
    return (x.abs().amax(dim=1) * 100 - 1).round().long().tolist()


def test_audio_folder_files_are_in_one_split_each(tmp_path):
    write_tones(tmp_path)
    kw = dict(path=str(tmp_path), seconds=0.256, test_fraction=0.2, validation_fraction=0.25)
    d = AudioFolder(**kw)
    ids = {s: file_ids(d.load(s)[0]) for s in SPLITS}
    assert sorted(sum(ids.values(), [])) == list(range(20))  # each file once, none lost
    counts = {s: np.bincount(d.load(s)[1].numpy(), minlength=2).tolist() for s in SPLITS}
    assert counts == {"train": [6, 6], "validation": [2, 2], "test": [2, 2]}
    again = AudioFolder(**kw)  # loaded in the other order: the same files
    assert {s: file_ids(again.load(s)[0]) for s in reversed(SPLITS)} == ids
    moved = AudioFolder(**{**kw, "seed": 1})
    assert file_ids(moved.load("validation")[0]) != ids["validation"]


def test_audio_folder_default_validation_is_a_tenth_of_train(tmp_path):
    write_tones(tmp_path, per_class=25)
    d = AudioFolder(path=str(tmp_path), seconds=0.256)  # test 20 %: 5, then 10 % of 20: 2
    sizes = {s: len(d.load(s)[0]) for s in SPLITS}
    assert sizes == {"train": 36, "validation": 4, "test": 10}
