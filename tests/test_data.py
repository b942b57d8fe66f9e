"""Loaders against tiny files written in exactly the standard formats, and the small data sets."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from budgetsched.bench.tasks import data as D

# the project's shared data folder sits beside the checkout (as in CI)
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """(cache directory, arrays) of one MNIST-1D generation, shared by this module."""
    path = tmp_path_factory.mktemp("cache")
    assert not (path / f"mnist1d-{D.MNIST1D_SAMPLES}.npz").exists()
    return path, D.mnist1d_arrays(path)


# ------------------------------------------------------------------------------------- MNIST-1D
def test_mnist1d_cache_round_trip(mnist1d_cache, monkeypatch):
    tmp_path, first = mnist1d_cache  # generated into an empty cache
    assert (tmp_path / "mnist1d-10000.npz").is_file()
    assert not list(tmp_path.glob("*.tmp*"))  # no half-written file left behind

    import mnist1d.data

    def no_generation(*a, **k):
        raise AssertionError("second load must read the cache, not regenerate")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    second = D.mnist1d_arrays(tmp_path)
    for k in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(first[k], second[k])
    assert first["x"].shape == (8000, 40) and first["x_test"].shape == (2000, 40)  # 10 000 sequences, 80/20


def test_mnist1d_splits_and_standardization(mnist1d_cache):
    tmp_path = mnist1d_cache[0]
    d = D.load_mnist1d(None, tmp_path)
    assert (d.train_x.shape, d.val_x.shape, d.test_x.shape) == ((6400, 40), (1600, 40), (2000, 40))
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    # standardized with train statistics: train mean 0 and std 1 exactly, others only roughly
    assert abs(d.train_x.mean().item()) < 1e-5 and abs(d.train_x.std(unbiased=False).item() - 1) < 1e-4
    assert abs(d.test_x.mean().item()) < 0.1
    assert set(d.train_y.unique().tolist()) == set(range(10))
    # train + val are the generated training rows under one affine map whose (mean, std) are the
    # statistics of the train split itself: recover the map from one row and check all of them
    raw = D.mnist1d_arrays(tmp_path)["x"].astype(np.float64)
    r0 = d.train_x[0].numpy().astype(np.float64)
    k = int(np.argmax([np.corrcoef(r0, r)[0, 1] for r in raw]))
    std, mean = np.polyfit(r0, raw[k], 1)
    back = np.concatenate([d.train_x.numpy(), d.val_x.numpy()]).astype(np.float64) * std + mean
    dist = torch.cdist(torch.from_numpy(back), torch.from_numpy(raw))
    nearest = dist.argmin(dim=1)
    assert dist.min(dim=1).values.max().item() < 1e-3  # every row maps back onto a generated row
    assert len(set(nearest.tolist())) == len(raw)  # ... and together they are all of them, once
    train_back = back[: len(d.train_x)]
    assert mean == pytest.approx(train_back.mean(), abs=1e-5) and std == pytest.approx(train_back.std(), rel=1e-5)
    assert D.load_mnist1d(None, tmp_path).val_x.equal(d.val_x)  # fixed split


def test_digits_stratified_fixed_split():
    a, b = D.load_digits_data(), D.load_digits_data()
    assert (len(a.train_x), len(a.val_x), len(a.test_x)) == (898, 539, 360)  # 50 / 30 / 20 %
    torch.testing.assert_close(a.val_x, b.val_x)  # fixed seed
    assert 0.0 <= a.train_x.min().item() and a.train_x.max().item() == 1.0
    # stratified: every class is in every split at close to its overall share
    for y in (a.train_y, a.val_y, a.test_y):
        counts = torch.bincount(y, minlength=10).float() / len(y)
        assert counts.min() > 0.07 and counts.max() < 0.13
    # the three splits partition the 1797 images
    from sklearn.datasets import load_digits

    ref = load_digits()
    rows = lambda x, y: sorted(tuple(r) + (int(c),) for r, c in zip(np.round(x * 16).astype(int).tolist(), y))  # noqa: E731
    got = torch.cat([a.train_x, a.val_x, a.test_x]).numpy(), torch.cat([a.train_y, a.val_y, a.test_y]).numpy()
    assert rows(*got) == rows(ref.data / 16.0, ref.target)


def test_digits_vae_shares_the_split_and_fixes_evaluation_noise():
    a, v = D.load_digits_data(), D.load_digits_vae()
    assert v.train_x.equal(a.train_x) and v.train_y.equal(a.train_x)  # targets are the images
    assert v.val_x.shape == (539, 64 + D.DIGITS_VAE_LATENT) and v.val_x[:, :64].equal(a.val_x)
    assert v.val_y.equal(a.val_x) and v.test_y.equal(a.test_x)
    assert D.load_digits_vae().test_x.equal(v.test_x)  # the same noise draw every time
    eps = v.val_x[:, 64:]
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1) < 0.05  # standard normal
    aug = D.append_noise(3)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.rand(4, 64)
    out = aug(x, g1)
    assert out.shape == (4, 67) and out[:, :64].equal(x) and out.equal(aug(x, g2))


# ------------------------------------------------------------------------------ Tiny Shakespeare
def test_shakespeare_blocks_and_shift(tmp_path):
    text = bytes(range(32, 97)) * 50  # 3250 ASCII bytes, 65 distinct characters
    (tmp_path / "input.txt").write_bytes(text)
    d = D.load_shakespeare(tmp_path, block_size=8, chars=None)
    n = len(text)
    ids = [c - 32 for c in text]  # the vocabulary is the sorted characters, so id = byte - 32 here
    train_part = ids[: int(n * 0.9)]
    assert d.train_x.shape == (len(train_part) // 9, 8) and d.train_x.dtype == torch.int64
    # block i of train is characters [9i, 9i + 9): x its first 8, y the same shifted by one
    i = 5
    assert d.train_x[i].tolist() == train_part[9 * i: 9 * i + 8]
    assert d.train_y[i].tolist() == train_part[9 * i + 1: 9 * i + 9]
    val_part = ids[int(n * 0.9): int(n * 0.95)]
    assert d.val_x[0].tolist() == val_part[:8]
    assert d.test_y.max().item() < D.SHAKESPEARE_VOCAB
    # a fixed prefix of each split: the first 90 characters of train (10 blocks of 9)
    cut = D.load_shakespeare(tmp_path, block_size=8, chars=(90, None, None))
    assert cut.train_x.equal(d.train_x[:10]) and cut.val_x.equal(d.val_x)
    (tmp_path / "input.txt").write_bytes(bytes(range(32, 127)) * 50)
    with pytest.raises(ValueError, match="95 distinct characters; the model knows 65"):
        D.load_shakespeare(tmp_path, block_size=8)


def test_shakespeare_lookup_order(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt").write_text("a" * 300)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BUDGETSCHED_DATA", raising=False)
    assert D.find_tinyshakespeare(tmp_path) == tmp_path / "tinyshakespeare.txt"
    env_file = tmp_path / "elsewhere.txt"
    env_file.write_text("b" * 300)
    monkeypatch.setenv("BUDGETSCHED_DATA", str(env_file))
    assert D.find_tinyshakespeare(None) == env_file
    # repo-sibling shared/data, found walking up from the working directory
    monkeypatch.delenv("BUDGETSCHED_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "tinyshakespeare.txt").write_text("c" * 300)
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "proj" / "sub")
    assert D.find_tinyshakespeare(None) == tmp_path / "shared" / "data" / "tinyshakespeare.txt"


def test_shakespeare_missing_names_url(tmp_path, monkeypatch):
    # a working directory with no shared/data above it (this machine may have one above /tmp)
    monkeypatch.setattr(D.Path, "cwd", classmethod(lambda cls: Path("/nonexistent/work")))
    monkeypatch.delenv("BUDGETSCHED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="tinyshakespeare.txt not found.*raw.githubusercontent.com"):
        D.load_shakespeare(tmp_path / "nothing")


def test_shakespeare_real_text_splits():
    assert SHAKESPEARE.is_file(), f"the shared Tiny Shakespeare copy is missing at {SHAKESPEARE}"
    d = D.load_shakespeare(SHAKESPEARE.parent, block_size=64, chars=None)
    n = SHAKESPEARE.stat().st_size
    assert len(d.train_x) == int(n * 0.9) // 65
    assert len(d.val_x) == (int(n * 0.95) - int(n * 0.9)) // 65
    assert len(D.shakespeare_vocab(SHAKESPEARE.read_bytes())) == D.SHAKESPEARE_VOCAB == 65
    task = D.load_shakespeare(SHAKESPEARE.parent)  # the task's subset: 100k / 10k / 10k characters, blocks of 33
    assert (len(task.train_x), len(task.val_x), len(task.test_x)) == (100_000 // 33, 10_000 // 33, 10_000 // 33)


# ---------------------------------------------------------------------------------------- CIFAR
def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], key: bytes) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": images.reshape(len(images), 3072), key: labels, b"batch_label": b"x"}, f)


@pytest.mark.parametrize("which", [10, 100])
def test_cifar_reader_pixel_layout(tmp_path, which):
    sub = tmp_path / ("cifar-10-batches-py" if which == 10 else "cifar-100-python")
    sub.mkdir()
    key = b"labels" if which == 10 else b"fine_labels"
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] if which == 10 else ["train"]
    rows = []
    for k, name in enumerate(names):
        img = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        # the format: row = 1024 red bytes, 1024 green, 1024 blue; each plane row-major 32x32
        img[1, 1024 + 32 * 5 + 7] = 77  # green, row 5, column 7 of image 1
        rows.append(img)
        _write_cifar_batch(sub / name, img, [(k * 4 + j) % which for j in range(4)], key)
    _write_cifar_batch(sub / ("test_batch" if which == 10 else "test"),
                       rng.integers(0, 256, (3, 3072), dtype=np.uint8), [which - 1, 0, 1], key)
    tx, ty, sx, sy = D.read_cifar(tmp_path, which)
    assert tx.shape == (4 * len(names), 3, 32, 32) and tx.dtype == np.uint8 and sx.shape == (3, 3, 32, 32)
    assert tx[1, 1, 5, 7] == 77
    np.testing.assert_array_equal(tx.reshape(len(tx), -1), np.concatenate(rows))
    assert ty.tolist() == [i % which for i in range(4 * len(names))] and sy.tolist() == [which - 1, 0, 1]


def test_cifar_loader_scaling_and_split(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_cifar_batch(sub / name, rng.integers(0, 256, (10, 3072), dtype=np.uint8), list(range(10)), b"labels")
    d = D.load_cifar10(tmp_path)
    assert (d.train_x.shape, d.val_x.shape, d.test_x.shape) == ((45, 3, 32, 32), (5, 3, 32, 32), (10, 3, 32, 32))
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    # per-channel standardization with the training split's statistics
    torch.testing.assert_close(d.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(d.train_x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    raw_test = D.read_cifar(tmp_path, 10)[2]
    # the test split is the test batch with the same affine map per channel: correlation 1
    a, b = d.test_x[:, 0].flatten().double(), torch.from_numpy(raw_test[:, 0].astype(np.float64)).flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 1 - 1e-9


def test_cifar_missing_file_names_file_and_url(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(D.DatasetNotFoundError, match=r"data_batch_1.*cifar-10-python\.tar\.gz"):
        D.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'train'.*cifar-100-python\.tar\.gz"):
        D.load_cifar100(tmp_path)


def test_no_data_dir_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("BUDGETSCHED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        D.load_stl10(None)


# ---------------------------------------------------------------------------------------- MNIST
def _idx(magic: int, arr: np.ndarray) -> bytes:
    return struct.pack(">i", magic) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("layout", ["plain", "gz-raw"])
def test_mnist_reader_and_vae_data(tmp_path, layout):
    rng = np.random.default_rng(3)
    files = {
        "train-images-idx3-ubyte": _idx(2051, rng.integers(0, 256, (20, 28, 28))),
        "train-labels-idx1-ubyte": _idx(2049, np.arange(20) % 10),
        "t10k-images-idx3-ubyte": _idx(2051, np.full((3, 28, 28), 255)),
        "t10k-labels-idx1-ubyte": _idx(2049, np.array([7, 2, 1])),
    }
    images = np.zeros((20, 28, 28), np.uint8)
    images[4, 10, 3] = 200
    files["train-images-idx3-ubyte"] = _idx(2051, images)
    where = tmp_path if layout == "plain" else tmp_path / "MNIST" / "raw"
    where.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        if layout == "plain":
            (where / name).write_bytes(blob)
        else:
            (where / (name + ".gz")).write_bytes(gzip.compress(blob))
    tx, ty, sx, sy = D.read_mnist(tmp_path)
    assert tx.shape == (20, 28, 28) and tx[4, 10, 3] == 200 and tx.sum() == 200
    assert ty.tolist() == [i % 10 for i in range(20)] and sy.tolist() == [7, 2, 1] and ty.dtype == np.int64
    d = D.load_mnist_vae(tmp_path)
    # training inputs are the images; evaluation inputs carry a fixed noise draw for the 2-d latent
    assert (d.train_x.shape, d.val_x.shape, d.test_x.shape) == ((18, 784), (2, 786), (3, 786))
    assert d.train_y.equal(d.train_x) and d.test_y.equal(d.test_x[:, :784]) and d.val_y.equal(d.val_x[:, :784])
    assert d.test_y.min().item() == 1.0  # 255 / 255
    assert 0.0 <= d.train_x.min().item() and d.train_x.max().item() <= 1.0
    assert D.load_mnist_vae(tmp_path).val_x.equal(d.val_x)  # the evaluation noise is fixed
    # the one bright pixel sits at flat index 10 * 28 + 3 of whichever split got image 4
    hit = torch.cat([d.train_x, d.val_y])
    assert torch.nonzero(hit).tolist() == [[torch.nonzero(hit.sum(1))[0, 0].item(), 10 * 28 + 3]]
    assert hit.max().item() == pytest.approx(200 / 255)


def test_mnist_missing_and_wrong_magic(tmp_path):
    with pytest.raises(D.DatasetNotFoundError, match=r"train-images-idx3-ubyte.*ossci-datasets"):
        D.read_mnist(tmp_path)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(_idx(2049, np.zeros(3)))  # label magic everywhere
    with pytest.raises(ValueError, match="magic 2049, expected 2051"):
        D.read_mnist(tmp_path)


# --------------------------------------------------------------------------------------- STL-10
def test_stl10_column_major_and_labels(tmp_path):
    sub = tmp_path / "stl10_binary"
    sub.mkdir()
    plane = 96 * 96
    n_train, n_test = 3, 2
    tr = np.zeros(n_train * 3 * plane, np.uint8)
    # image 2, channel 1 (green), row 10, column 40: column-major plane -> byte col * 96 + row
    tr[2 * 3 * plane + 1 * plane + 40 * 96 + 10] = 123
    (sub / "train_X.bin").write_bytes(tr.tobytes())
    (sub / "train_y.bin").write_bytes(bytes([1, 10, 5]))
    (sub / "test_X.bin").write_bytes(np.full(n_test * 3 * plane, 9, np.uint8).tobytes())
    (sub / "test_y.bin").write_bytes(bytes([3, 4]))
    tx, ty, sx, sy = D.read_stl10(tmp_path)
    assert tx.shape == (3, 3, 96, 96) and sx.shape == (2, 3, 96, 96) and tx.dtype == np.uint8
    assert tx[2, 1, 10, 40] == 123 and tx.sum() == 123
    assert ty.tolist() == [0, 9, 4] and sy.tolist() == [2, 3]
    d = D.load_stl10(tmp_path)
    assert d.train_x.shape[1:] == (3, 96, 96) and len(d.train_x) + len(d.val_x) == 3
    assert torch.isfinite(d.test_x).all()

    (sub / "train_y.bin").write_bytes(bytes([0, 1, 2]))
    with pytest.raises(ValueError, match="labels in 1..10"):
        D.read_stl10(tmp_path)
    (sub / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    (sub / "test_X.bin").unlink()
    with pytest.raises(D.DatasetNotFoundError, match=r"test_X\.bin.*stl10_binary\.tar\.gz"):
        D.read_stl10(tmp_path)


# --------------------------------------------------------------------------------- augmentation
def test_random_crop_flip_matches_reference():
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5) + 1
    aug = D.random_crop_flip(2)
    out = aug(x, torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, aug(x, torch.Generator().manual_seed(7)))  # seeded: reproducible
    # replay the draws and crop each image by hand
    g = torch.Generator().manual_seed(7)
    dy, dx = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        ref = padded[i, :, dy[i]: dy[i] + 6, dx[i]: dx[i] + 5]
        torch.testing.assert_close(out[i], ref.flip(-1) if flip[i] else ref)
    assert out.shape == x.shape
    torch.testing.assert_close(D.random_crop_flip(0)(x, torch.Generator().manual_seed(1)).abs().sum(), x.sum())
    with pytest.raises(ValueError, match="pad"):
        D.random_crop_flip(-1)
