"""The image modality and its data sets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvq.errors import UserError
from diffvq.interfaces import DataInfo
from diffvq_image.datasets import Digits, FashionMnist, ImageFolder, Mnist, read_idx, split_per_class
from diffvq_image.modality import ImageModality


def test_mnist_ships_5000_digits_split_per_class():
    d = Mnist()
    assert d.info().shape == (1, 28, 28) and d.info().n_classes == 10
    x, y = d.load("test")
    assert x.shape == (500, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert torch.bincount(y).tolist() == [50] * 10
    xt, _ = d.load("train")
    xv, yv = d.load("validation")  # 10 % of the other 4,500, per class
    assert len(xt) == 4050 and torch.bincount(yv).tolist() == [45] * 10
    assert Mnist(size=32).load("test")[0].shape == (500, 1, 32, 32)


def test_digits_are_small_and_labelled():
    x, y = Digits().load("train")
    assert x.shape[1:] == (1, 8, 8) and len(x) == len(y) > 1400
    assert set(y.tolist()) == set(range(10))


def test_split_is_stratified_disjoint_and_reproducible():
    labels = np.repeat(np.arange(3), [10, 5, 2])
    s = split_per_class(labels, 0.2, seed=3)
    assert set(s["train"]).isdisjoint(s["test"])
    assert len(s["train"]) + len(s["validation"]) + len(s["test"]) == 17
    assert sorted(labels[s["test"]].tolist()) == [0, 0, 1, 2]
    assert np.array_equal(split_per_class(labels, 0.2, seed=3)["test"], s["test"])


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_and_explains_when_missing(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        FashionMnist(root=str(tmp_path)).info()
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        img, lab = FashionMnist.FILES[split]
        write_idx(tmp_path / img, rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / lab, np.arange(n) % 10)
    d = FashionMnist(root=str(tmp_path), train_limit=8)
    x, y = d.load("train")
    assert x.shape == (8, 1, 28, 28) and y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert d.info().class_names[9] == "Ankle boot"
    (tmp_path / "bad.gz").write_bytes(b"nope")
    with pytest.raises(UserError, match="cannot read IDX file"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.skipif(bool(FashionMnist().missing()),
                    reason="needs the Debian package dataset-fashion-mnist")
def test_installed_fashion_mnist():
    x, y = FashionMnist(test_limit=100).load("test")
    assert x.shape == (100, 1, 28, 28) and y.max() <= 9


def make_folder(root: Path) -> None:
    """Four kinds of PNG and a JPG, in two classes."""
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    Image.new("L", (16, 16), 200).save(root / "cats" / "gray.png")
    Image.new("RGB", (16, 16), (255, 0, 0)).save(root / "cats" / "rgb.jpg")
    Image.new("RGBA", (16, 16), (0, 255, 0, 0)).save(root / "dogs" / "transparent.png")
    Image.new("P", (16, 16), 3).save(root / "dogs" / "palette.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "dogs" / "blue.png")
    (root / "dogs" / "notes.txt").write_text("not an image, ignored")


def test_folder_handles_modes_and_classes(tmp_path):
    make_folder(tmp_path)
    d = ImageFolder(path=str(tmp_path), channels=3, test_fraction=0.0, validation_fraction=0.0)
    info = d.info()
    assert info.class_names == ("cats", "dogs") and info.shape == (3, 16, 16)
    x, y = d.load("train")
    assert x.shape == (5, 3, 16, 16) and y.tolist() == [0, 0, 1, 1, 1]
    transparent = x[4]  # sorted: blue, palette, transparent
    assert torch.allclose(transparent, torch.zeros_like(transparent))  # composited over black
    white = ImageFolder(path=str(tmp_path), background="white", test_fraction=0.0, validation_fraction=0.0).load("train")[0]
    assert torch.allclose(white[4], torch.ones_like(white[4]))
    gray = ImageFolder(path=str(tmp_path), channels=1, size=8).load("train")[0]
    assert gray.shape[1:] == (1, 8, 8)


def test_folder_errors_name_the_file(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"cannot read image .*broken\.png"):
        ImageFolder(path=str(tmp_path), test_fraction=0.0, validation_fraction=0.0).load("train")
    (tmp_path / "dogs" / "broken.png").unlink()
    Image.new("L", (20, 20)).save(tmp_path / "dogs" / "big.png")
    with pytest.raises(UserError, match="set data.size to resize"):
        ImageFolder(path=str(tmp_path), test_fraction=0.0, validation_fraction=0.0).load("train")
    with pytest.raises(UserError, match="not a folder"):
        ImageFolder(path=str(tmp_path / "missing")).info()
    (tmp_path / "stray.png").write_bytes(b"")
    with pytest.raises(UserError, match="both images"):
        ImageFolder(path=str(tmp_path)).info()


def test_unlabelled_folder(tmp_path):
    for i in range(3):
        Image.new("L", (8, 8), i * 50).save(tmp_path / f"{i}.png")
    d = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.34)
    assert d.info().class_names == ()
    assert [len(d.load(s)[0]) for s in ("train", "validation", "test")] == [1, 1, 1]


def test_folder_fingerprint_changes_with_content(tmp_path):
    make_folder(tmp_path)
    before = ImageFolder(path=str(tmp_path)).fingerprint()
    Image.new("L", (16, 16), 1).save(tmp_path / "cats" / "new.png")
    assert ImageFolder(path=str(tmp_path)).fingerprint() != before


def test_folder_scales_16_bit_greyscale_keeping_every_level(tmp_path):
    """A 16-bit PNG is scaled from 0..65535, not clipped through 8 bits (Pillow's I;16 -> L
    makes everything above 255 white)."""
    levels = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16)  # 4,096 distinct levels
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(levels.reshape(64, 64)).save(tmp_path / cls / "ramp.png")
    assert Image.open(tmp_path / "a" / "ramp.png").mode == "I;16"
    x, _ = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.0, validation_fraction=0.0).load("train")
    got = x[0, 0].reshape(-1).numpy()
    np.testing.assert_allclose(got, levels / 65535.0, atol=1e-6)
    assert got[0] == 0 and got[-1] == 1 and len(np.unique(got)) == 4096
    rgb, _ = ImageFolder(path=str(tmp_path), channels=3, size=16, test_fraction=0.0, validation_fraction=0.0).load("train")
    row = rgb[0, 0, 8].numpy()  # resized, every channel the same, still a ramp
    assert torch.equal(rgb[0, 0], rgb[0, 2]) and (np.diff(row) > 0).all()
    assert len(np.unique(rgb[0, 0].numpy())) > 200


def test_folder_reads_tiff_float_and_32_bit_and_refuses_other_ranges(tmp_path):
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    (tmp_path / "a").mkdir()
    Image.fromarray(ramp).save(tmp_path / "a" / "float.tif")  # mode F
    Image.fromarray((ramp * 65535).round().astype(np.int32)).save(tmp_path / "a" / "int.tif")
    x, _ = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.0, validation_fraction=0.0).load("train")
    np.testing.assert_allclose(x[0, 0].numpy(), ramp, atol=1e-6)  # float.tif
    np.testing.assert_allclose(x[1, 0].numpy(), ramp, atol=1e-4)  # int.tif, as 16-bit
    Image.fromarray(ramp * 255).save(tmp_path / "a" / "float.tif")
    with pytest.raises(UserError, match=r"float\.tif: floating-point pixels from 0 to 255, "
                                        r"expected 0 to 1.*on_error=skip"):
        ImageFolder(path=str(tmp_path), test_fraction=0.0, validation_fraction=0.0).load("train")
    Image.fromarray(np.full((4, 4), -5, np.int32)).save(tmp_path / "a" / "float.tif")
    with pytest.raises(UserError, match=r"32-bit integer pixels from -5 to -5"):
        ImageFolder(path=str(tmp_path), test_fraction=0.0, validation_fraction=0.0).load("train")


def test_folder_modes_with_transparency_cmyk_and_bilevel(tmp_path):
    (tmp_path / "a").mkdir()
    grey16 = Image.fromarray(np.array([[0, 30000], [65535, 0]], np.uint16))
    grey16.save(tmp_path / "a" / "1-grey16-transparent.png", transparency=0)
    Image.new("LA", (2, 2), (200, 0)).save(tmp_path / "a" / "2-la-transparent.png")
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.save(tmp_path / "a" / "3-palette-transparent.png", transparency=1)
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "a" / "4-cmyk.jpg")
    Image.new("1", (2, 2), 1).save(tmp_path / "a" / "5-bilevel.png")
    assert Image.open(tmp_path / "a" / "1-grey16-transparent.png").mode == "I;16"
    for background, bg in (("black", 0.0), ("white", 1.0)):
        x, _ = ImageFolder(path=str(tmp_path), background=background,
                           test_fraction=0.0, validation_fraction=0.0).load("train")
        assert x.shape == (5, 3, 2, 2)
        np.testing.assert_allclose(x[0, :, 0, 1].numpy(), 30000 / 65535, atol=1e-6)
        assert (x[0, :, 0, 0] == bg).all() and (x[0, :, 1, 0] == 1).all()
        assert (x[1] == bg).all() and (x[2] == bg).all()  # fully transparent
        assert (x[3] > 0.95).all() and (x[4] == 1).all()  # no ink: white; bilevel 1: white


def test_folder_on_error_skips_bad_files_with_one_warning(tmp_path, capsys):
    make_folder(tmp_path)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"garbage")
    (tmp_path / "cats" / "empty.png").write_bytes(b"")
    d = ImageFolder(path=str(tmp_path), on_error="skip", test_fraction=0.0,
                    validation_fraction=0.0)
    x, y = d.load("train")
    assert x.shape == (5, 3, 16, 16) and y.tolist() == [0, 0, 1, 1, 1]
    assert sorted(e.path.name for e in d.skipped) == ["broken.png", "empty.png"]
    d.load("test")  # read once: one warning
    err = capsys.readouterr().err
    assert err.count("folder: skipped 2 of 7 files") == 1
    assert "cats/empty.png: empty file (0 bytes)" in err and "dogs/broken.png: not an image" in err
    for f in (tmp_path / "cats").iterdir():
        f.write_bytes(b"")
    with pytest.raises(UserError, match=r"class folder\(s\) cats .*none of the images could be "
                                        r"used \(4 skipped\)"):
        ImageFolder(path=str(tmp_path), on_error="skip").load("train")


def test_folder_reads_names_that_are_not_utf8(tmp_path):
    """b"caf\\xe9.png" and a class folder b"cl\\xffass" read fine; the class name is shown with
    the byte escaped, so that it can go into JSON, YAML and HTML."""
    import os

    root = os.fsencode(tmp_path)
    for cls in (b"a", b"cl\xffass"):
        os.mkdir(root + b"/" + cls)
        Image.new("L", (4, 4), 100).save(root + b"/" + cls + b"/caf\xe9.png")
    d = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.0, validation_fraction=0.0)
    assert d.info().class_names == ("a", "cl\\xffass")
    x, y = d.load("train")
    assert y.tolist() == [0, 1] and torch.allclose(x, torch.full_like(x, 100 / 255))
    assert len(d.fingerprint()) == 16
    with open(root + b"/a/caf\xe9.png", "wb") as f:
        f.write(b"not a png")
    with pytest.raises(UserError, match=r"a/caf\\xe9\.png: not an image") as info:
        ImageFolder(path=str(tmp_path)).load("train")
    str(info.value).encode("utf-8")  # printable and storable


def test_modality_round_trip_psnr_and_gallery(tmp_path):
    info = DataInfo("image", (1, 8, 8), ("a", "b"))
    m = ImageModality(info, gallery_scale=2, gallery_columns=3)
    x = torch.rand(5, 1, 8, 8)
    assert torch.allclose(m.from_model(m.to_model(x)), x, atol=1e-6)
    assert m.reconstruction_metrics(x, x)["psnr_db"] > 90
    noisy = (x + 0.1).clamp(0, 1)
    assert 15 < m.reconstruction_metrics(x, noisy)["psnr_db"] < 25
    files = m.write_gallery(x, torch.tensor([0, 0, 0, 0, 1]), tmp_path, title="t")
    img = Image.open(files[0])
    assert files[0].name == "grid.png" and img.mode == "RGB"
    # class a wraps onto two rows of 3, class b has one: three rows of 16-pixel cells
    assert img.height >= 3 * 16 and img.width >= 3 * 16
    with pytest.raises(ValueError, match="C in"):
        ImageModality(DataInfo("image", (2, 8, 8)))
