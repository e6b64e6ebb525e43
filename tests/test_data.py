"""landscape.data: formats written here in the official layouts, downloads from 127.0.0.1,
error paths, subsets, normalization, augmentation, and the real Fashion-MNIST when installed."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from cases import cifar_batches, idx_bytes, write_fmnist

from landscape import data as D
from landscape.data import fashion_mnist
from landscape.errors import LandscapeError

REAL_FMNIST = Path(D.FASHION_MNIST_ROOT)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No $LANDSCAPE_DATA from the environment, CIFAR default root inside tmp, fresh cache."""
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    D.clear_cache()
    yield
    D.clear_cache()


# ------------------------------------------------------------------ writers (official formats)




def write_cifar_archive(path: Path, canon: str, protocol: int = 2, seed: int = 0):
    members, truth = cifar_batches(canon, seed)
    folder = "cifar-10-batches-py" if canon == "cifar10" else "cifar-100-python"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            raw = pickle.dumps(obj, protocol=protocol)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return truth


# ------------------------------------------------------------------ specs and names


def test_specs_published_values():
    s = D.dataset_spec("fashion-mnist")
    assert (s.num_classes, s.in_chans, s.img_size, s.mean, s.std) == (10, 1, 28, (0.2860,),
                                                                     (0.3530,))
    assert D.dataset_spec("CIFAR-10").std == (0.2470, 0.2435, 0.2616)
    assert D.dataset_spec("cifar100").mean == (0.5071, 0.4865, 0.4409)
    assert D.dataset_spec("cifar100").num_classes == 100


def test_unknown_dataset_lists_known_names():
    with pytest.raises(LandscapeError, match="known datasets: fashion-mnist, cifar10, cifar100"):
        D.load_dataset("mnist-ish")
    with pytest.raises(LandscapeError, match="unknown split"):
        D.load_dataset("fashion-mnist", split="val")


# ------------------------------------------------------------------ Fashion-MNIST IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    truth = write_fmnist(tmp_path / "fm", gz=gz)
    for split in ("train", "test"):
        d = D.load_dataset("fashion-mnist", split, root=tmp_path / "fm", normalize=False)
        images, labels = truth[split]
        assert d.images.shape == (len(labels), 1, 28, 28) and d.images.dtype == torch.float32
        assert torch.equal((d.images * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
        assert torch.equal(d.labels, torch.from_numpy(labels.astype(np.int64)))
        assert d.labels.dtype == torch.int64
        assert (d.name, d.split, d.num_classes, d.indices) == ("fashion-mnist", split, 10, None)
        assert d.mean == (0.0,) and d.std == (1.0,)


def test_idx_root_from_env_and_subfolder(tmp_path, monkeypatch):
    truth = write_fmnist(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "data"))  # <LANDSCAPE_DATA>/fashion-mnist
    d = D.load_dataset("fashion-mnist", "test", normalize=False)
    assert torch.equal(d.labels, torch.from_numpy(truth["test"][1].astype(np.int64)))
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "data" / "fashion-mnist"))  # the folder itself
    assert len(D.load_dataset("fashion-mnist", "test")) == len(truth["test"][1])


def test_normalization_applies_published_stats(tmp_path):
    truth = write_fmnist(tmp_path)
    d = D.load_dataset("fashion-mnist", root=tmp_path)
    assert d.mean == (0.2860,) and d.std == (0.3530,)
    raw = torch.from_numpy(truth["train"][0].astype(np.float64))
    expect = ((raw / 255 - 0.2860) / 0.3530).float()
    torch.testing.assert_close(d.images[:, 0], expect, rtol=0, atol=1e-6)
    d2 = D.load_dataset("fashion-mnist", root=tmp_path, normalize=([0.5], [0.25]))
    torch.testing.assert_close(d2.images[:, 0], ((raw / 255 - 0.5) / 0.25).float(), rtol=0,
                               atol=1e-6)
    with pytest.raises(LandscapeError, match="img_size only resizes imagefolder"):
        D.load_dataset("fashion-mnist", root=tmp_path, img_size=32)
    assert len(D.load_dataset("fashion-mnist", root=tmp_path, img_size=28)) == 20
    with pytest.raises(LandscapeError, match="positive stds"):
        D.load_dataset("fashion-mnist", root=tmp_path, normalize=([0.5], [0.0]))


def test_decoded_arrays_cached_by_path_and_mtime(tmp_path):
    write_fmnist(tmp_path)
    D.load_dataset("fashion-mnist", root=tmp_path)
    D.load_dataset("fashion-mnist", root=tmp_path, subset=5)
    info = fashion_mnist._decode_idx_pair.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    # rewriting the files (new mtime/size) invalidates the entry and the new values are read
    truth = write_fmnist(tmp_path, n_train=30, seed=3)
    d = D.load_dataset("fashion-mnist", root=tmp_path, normalize=False)
    assert len(d) == 30
    assert torch.equal(d.labels, torch.from_numpy(truth["train"][1].astype(np.int64)))


def _corrupt_cases(good_images: bytes, good_labels: bytes):
    return {
        "truncated data": (good_images[:-5], good_labels, "truncated"),
        "trailing bytes": (good_images + b"\0", good_labels, "trailing"),
        "bad magic": (b"\x01\x02" + good_images[2:], good_labels, "magic"),
        "wrong ndim": (good_labels, good_labels, "dimensions"),
        "short header": (good_images[:6], good_labels, "header"),
        "count mismatch": (good_images, idx_bytes(np.zeros(3, np.uint8)), "labels"),
        "bad label": (good_images, idx_bytes(np.full(20, 11, np.uint8)), "label 11"),
    }


def test_corrupt_idx_files_raise_with_path(tmp_path):
    images = idx_bytes(np.zeros((20, 28, 28), np.uint8))
    labels = idx_bytes(np.zeros(20, np.uint8))
    for i, (name, (img, lab, msg)) in enumerate(_corrupt_cases(images, labels).items()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        (folder / "train-images-idx3-ubyte").write_bytes(img)
        (folder / "train-labels-idx1-ubyte").write_bytes(lab)
        with pytest.raises(LandscapeError, match=msg) as e:
            D.load_dataset("fashion-mnist", root=folder)
        assert str(folder) in str(e.value), name
        assert "\n" not in str(e.value)


def test_truncated_gzip_idx(tmp_path):
    write_fmnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(LandscapeError, match="corrupt") as e:
        D.load_dataset("fashion-mnist", root=tmp_path)
    assert str(p) in str(e.value)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(LandscapeError) as e:
        D.load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "LANDSCAPE_DATA" in msg
    assert "--data-root" in msg and str(tmp_path / "nowhere") in msg and "\n" not in msg


def test_half_installed_fashion_mnist(tmp_path):
    write_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(LandscapeError, match="lacks t10k-labels-idx1-ubyte"):
        D.load_dataset("fashion-mnist", "test", root=tmp_path)


# ------------------------------------------------------------------ subsets


def test_subset_determinism_fraction_count_and_strata(tmp_path):
    write_fmnist(tmp_path, n_train=200)
    full = D.load_dataset("fashion-mnist", root=tmp_path, normalize=False)
    a = D.load_dataset("fashion-mnist", root=tmp_path, subset=0.25, seed=7, normalize=False)
    b = D.load_dataset("fashion-mnist", root=tmp_path, subset=0.25, seed=7, normalize=False)
    c = D.load_dataset("fashion-mnist", root=tmp_path, subset=0.25, seed=8, normalize=False)
    assert len(a) == 50 and a.seed == 7
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert np.all(np.diff(a.indices) > 0)
    assert torch.equal(a.images, full.images[torch.from_numpy(a.indices)])
    assert torch.equal(a.labels, full.labels[torch.from_numpy(a.indices)])
    # stratified: 20 per class in the full set -> exactly 5 per class
    assert torch.equal(torch.bincount(a.labels, minlength=10), torch.full((10,), 5))
    n = D.load_dataset("fashion-mnist", root=tmp_path, subset=33, seed=7)
    assert len(n) == 33 and len(n.indices) == 33 and len(set(n.indices.tolist())) == 33
    counts = torch.bincount(n.labels, minlength=10)
    assert counts.max() - counts.min() <= 1
    again = D.load_dataset("fashion-mnist", root=tmp_path, subset="33", seed=7)
    assert np.array_equal(again.indices, n.indices)
    assert len(D.load_dataset("fashion-mnist", root=tmp_path, subset="10%")) == 20
    assert D.load_dataset("fashion-mnist", root=tmp_path, subset=1.0).indices is None


@pytest.mark.parametrize("bad", [0, -3, 0.0, 1.5, -0.1, float("nan"), True, "lots", "150%", [1]])
def test_bad_subset_values(tmp_path, bad):
    write_fmnist(tmp_path)
    with pytest.raises(LandscapeError, match="bad subset"):
        D.load_dataset("fashion-mnist", root=tmp_path, subset=bad)


def test_subset_larger_than_split_warns_and_uses_all(tmp_path):
    write_fmnist(tmp_path)
    with pytest.warns(UserWarning, match="using all"):
        d = D.load_dataset("fashion-mnist", root=tmp_path, subset=1000)
    assert len(d) == 20 and d.indices is None


# ------------------------------------------------------------------ ImageData


def test_take_to_and_batches(tmp_path):
    write_fmnist(tmp_path, n_train=20)
    d = D.load_dataset("fashion-mnist", root=tmp_path, subset=10, seed=1)
    t = d.take(4)
    assert len(t) == 4 and np.array_equal(t.indices, d.indices[:4])
    assert torch.equal(t.images, d.images[:4]) and t.to("cpu").images.device.type == "cpu"
    batches = list(d.batches(3))
    assert [len(y) for _, y in batches] == [3, 3, 3, 1] and len(d.batches(3)) == 4
    assert torch.equal(torch.cat([x for x, _ in batches]), d.images)
    assert [len(y) for _, y in d.batches(3, drop_last=True)] == [3, 3, 3]
    s1 = torch.cat([y for _, y in d.batches(4, shuffle=True, seed=5)])
    s2 = torch.cat([y for _, y in d.batches(4, shuffle=True, seed=5)])
    xs = torch.cat([x for x, _ in d.batches(4, shuffle=True, seed=6)])
    assert torch.equal(s1, s2) and torch.equal(torch.sort(s1).values, torch.sort(d.labels).values)
    assert not torch.equal(xs, d.images)  # a different order
    assert torch.equal(torch.sort(xs.flatten(1).sum(1)).values,
                       torch.sort(d.images.flatten(1).sum(1)).values)
    x, y = next(d.batches(2))
    assert x.shape == (2, 1, 28, 28) and y.shape == (2,)
    with pytest.raises(LandscapeError, match="batch size"):
        d.batches(0)


# ------------------------------------------------------------------ CIFAR


@pytest.mark.parametrize("canon,protocol", [("cifar10", 2), ("cifar100", 4), ("cifar10", 5)])
def test_cifar_archive_round_trip(tmp_path, canon, protocol):
    archive = "cifar-10-python.tar.gz" if canon == "cifar10" else "cifar-100-python.tar.gz"
    truth = write_cifar_archive(tmp_path / archive, canon, protocol=protocol)
    for split in ("train", "test"):
        d = D.load_dataset(canon, split, root=tmp_path, normalize=False)
        images, labels = truth[split]
        assert d.images.shape == (len(labels), 3, 32, 32) and d.num_classes == (
            10 if canon == "cifar10" else 100)
        assert torch.equal((d.images * 255).round().to(torch.uint8), torch.from_numpy(images))
        assert torch.equal(d.labels, torch.from_numpy(labels.astype(np.int64)))
    assert d.classes[0] == ("airplane" if canon == "cifar10" else "class0")
    n = D.load_dataset(canon, "train", root=tmp_path)
    m, s = D.dataset_spec(canon).mean, D.dataset_spec(canon).std
    raw = torch.from_numpy(truth["train"][0].astype(np.float64)) / 255
    expect = (raw - torch.tensor(m, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(s, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(n.images, expect.float(), rtol=0, atol=1e-6)


def test_cifar_extracted_folder(tmp_path):
    members, truth = cifar_batches("cifar10", seed=2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, obj in members.items():  # as the original files: numpy.core.multiarray names
        raw = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray",
                                                    b"numpy.core.multiarray")
        (folder / name).write_bytes(raw)
    assert b"numpy.core.multiarray\n_reconstruct" in (folder / "test_batch").read_bytes()
    for root in (tmp_path, folder):  # the parent, or the extracted folder itself
        d = D.load_dataset("cifar10", "test", root=root, normalize=False)
        assert torch.equal(d.labels, torch.from_numpy(truth["test"][1]))


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_refuses_non_numpy_pickles(tmp_path):
    members, _ = cifar_batches("cifar10")
    members["test_batch"][b"labels"] = _Evil()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, obj in members.items():
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    refused = r"refusing to load posix\.getcwd|refusing to load os"
    with pytest.raises(LandscapeError, match=refused) as e:
        D.load_dataset("cifar10", "test", root=tmp_path)
    assert "test_batch" in str(e.value)


def test_cifar_corrupt_archive_and_bad_shapes(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b" + b"junk" * 50)
    with pytest.raises(LandscapeError, match="corrupt CIFAR archive") as e:
        D.load_dataset("cifar100", root=tmp_path)
    assert "cifar-100-python.tar.gz" in str(e.value)
    members, _ = cifar_batches("cifar10")
    members["test_batch"][b"data"] = np.zeros((10, 100), np.uint8)
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, obj in members.items():
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(LandscapeError, match=r"uint8 \(N, 3072\)"):
        D.load_dataset("cifar10", "test", root=tmp_path / "c10")


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(LandscapeError) as e:
        D.load_dataset("cifar100", root=tmp_path)
    msg = str(e.value)
    assert "download=True" in msg and "--download" in msg and "cifar-100-python.tar.gz" in msg
    assert "\n" not in msg


@pytest.fixture()
def http_dir(tmp_path):
    """An http.server on 127.0.0.1 (port 0) serving a folder, in a thread."""
    serve = tmp_path / "www"
    serve.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(serve)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield serve, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_download_verified_and_refused_on_mismatch(tmp_path, http_dir, monkeypatch):
    serve, base = http_dir
    truth = write_cifar_archive(serve / "cifar-10-python.tar.gz", "cifar10")
    md5 = hashlib.md5((serve / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    url = f"{base}/cifar-10-python.tar.gz"

    bad_root = tmp_path / "bad"
    with pytest.raises(LandscapeError, match=f"expected md5 {'0' * 32}, got {md5}"):
        D.load_dataset("cifar10", root=bad_root, download=True, url=url, md5="0" * 32,
                       progress=False)
    assert list(bad_root.iterdir()) == []  # nothing kept, no temp file left

    # the module constant is the default URL (and the md5 argument the checksum)
    monkeypatch.setattr(D.cifar, "CIFAR10_URL", url)
    root = tmp_path / "good"
    d = D.load_dataset("cifar10", "test", root=root, download=True, md5=md5, progress=False,
                       normalize=False)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert torch.equal(d.labels, torch.from_numpy(truth["test"][1]))
    # found locally now: no download needed (server content changed would not matter)
    (serve / "cifar-10-python.tar.gz").unlink()
    assert len(D.load_dataset("cifar10", "train", root=root)) == 20

    with pytest.raises(LandscapeError, match="download of .* failed"):
        D.download_archive(f"{base}/missing.tar.gz", tmp_path / "x" / "a.tar.gz", md5,
                           progress=False)
    assert list((tmp_path / "x").iterdir()) == []


# ------------------------------------------------------------------ ImageFolder


def _write_tree(root: Path, sizes, mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    truth = []
    for cls in ["zebra", "ant", "moth"]:  # sorted: ant, moth, zebra
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j, (h, w) in enumerate(sizes):
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a, mode).save(root / cls / f"{j}.png")
            truth.append((cls, j, a))
    return truth


def test_image_folder_round_trip(tmp_path):
    truth = _write_tree(tmp_path / "tree", [(6, 5), (6, 5)])
    d = D.load_dataset("imagefolder", root=tmp_path / "tree", normalize=False)
    assert d.classes == ("ant", "moth", "zebra") and d.num_classes == 3
    assert d.images.shape == (6, 3, 6, 5)
    order = sorted(truth, key=lambda t: (t[0], t[1]))
    for k, (cls, _, a) in enumerate(order):
        assert d.labels[k].item() == d.classes.index(cls)
        assert torch.equal((d.images[k] * 255).round().to(torch.uint8),
                           torch.from_numpy(a).permute(2, 0, 1))
    n = D.load_dataset("imagefolder", root=tmp_path / "tree")  # stats of the loaded data
    torch.testing.assert_close(n.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.images.std(dim=(0, 2, 3), unbiased=False), torch.ones(3),
                               atol=1e-5, rtol=0)


def test_image_folder_gray_sizes_and_splits(tmp_path):
    _write_tree(tmp_path / "g" / "train", [(8, 8), (10, 12)], mode="L")
    _write_tree(tmp_path / "g" / "test", [(8, 8)], mode="L")
    with pytest.raises(LandscapeError, match="differ in size.*img_size"):
        D.load_dataset("imagefolder", root=tmp_path / "g")
    d = D.load_dataset("imagefolder", root=tmp_path / "g", img_size=8)
    assert d.images.shape == (6, 1, 8, 8) and d.split == "train"
    assert len(D.load_dataset("imagefolder", "test", root=tmp_path / "g")) == 3
    with pytest.raises(LandscapeError, match="no class folders"):
        D.load_dataset("imagefolder", root=tmp_path / "g" / "train" / "ant")
    (tmp_path / "bad" / "c").mkdir(parents=True)
    (tmp_path / "bad" / "c" / "x.png").write_bytes(b"not a png")
    with pytest.raises(LandscapeError, match="cannot decode image .*x.png"):
        D.load_dataset("imagefolder", root=tmp_path / "bad")
    with pytest.raises(LandscapeError, match="needs a root"):
        D.load_dataset("imagefolder")


# ------------------------------------------------------------------ augmentation


def _shift(img: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """img (C,H,W) moved by (dy, dx) pixels (content moves down/right), exposed area = fill."""
    c, h, w = img.shape
    out = torch.full_like(img, fill)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out


def test_augment_crop_and_flip_on_hand_made_image():
    img = torch.arange(1.0, 26.0).view(1, 5, 5)
    fill = -0.5 / 0.25
    aug = D.Augment(pad=1, flip=True, mean=[0.5], std=[0.25])
    x = img.expand(400, 1, 5, 5)
    out = aug(x, torch.Generator().manual_seed(0))
    candidates = {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = _shift(img, dy, dx, fill)
            candidates[(dy, dx, False)] = s
            candidates[(dy, dx, True)] = s.flip(-1)
    seen = set()
    for o in out:
        match = [k for k, v in candidates.items() if torch.equal(o, v)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 18  # every shift, flipped and not
    # flip only: each output is the image or its mirror, both occur
    f = D.Augment(pad=0, flip=True)(x[:50], torch.Generator().manual_seed(1))
    assert all(torch.equal(o, img) or torch.equal(o, img.flip(-1)) for o in f)
    assert {torch.equal(o, img) for o in f} == {True, False}
    # no mean/std: padding is 0 in the normalized space; nothing asked -> unchanged
    z = D.Augment(pad=2, flip=False)(x[:64], torch.Generator().manual_seed(2))
    assert set(z.unique().tolist()) <= set(img.unique().tolist()) | {0.0}
    assert torch.equal(D.Augment(pad=0, flip=False)(x, torch.Generator()), x)


def test_augment_deterministic_and_input_untouched():
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    keep = x.clone()
    aug = D.Augment(pad=2, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(x, keep)
    # per channel fill = -mean/std appears where padding shows
    for ch, v in enumerate((-0.2, -0.4, -0.6)):
        assert (a[:, ch] == torch.tensor(v)).any()
    with pytest.raises(LandscapeError, match="pad"):
        D.Augment(pad=-1)


def test_mix_mixup_cutmix():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.full((1, 4, 4), float(i)) for i in range(6)])
    y = torch.arange(6)
    same, t = D.mix(x, y, 6, 0.0, 0.0, g)
    assert same is x and torch.equal(t, torch.eye(6))
    mx, mt = D.mix(x, y, 6, 1.0, 0.0, torch.Generator().manual_seed(1))
    mx2, mt2 = D.mix(x, y, 6, 1.0, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(mx, mx2) and torch.equal(mt, mt2)
    torch.testing.assert_close(mt.sum(1), torch.ones(6))
    # image i is the constant i and y = i: the target-weighted class index is the pixel mean
    idx = torch.arange(6.0)
    torch.testing.assert_close(mx.mean(dim=(1, 2, 3)), mt @ idx, rtol=0, atol=1e-5)
    torch.testing.assert_close(mx, (mt @ idx).view(6, 1, 1, 1).expand_as(mx), rtol=0, atol=1e-5)
    own = mt.diagonal()[mt.diagonal() < 1]  # images mixed with another: one lam per batch
    assert len(own) >= 2 and torch.allclose(own, own[0].expand_as(own)) and 0 < own[0] < 1
    x8 = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 8, 8)
    cx, ct = D.mix(x8, y, 6, 0.0, 1.0, torch.Generator().manual_seed(3))
    assert ((ct.diagonal() > 0) & (ct.diagonal() < 1)).any()  # a real box was pasted
    torch.testing.assert_close(ct.sum(1), torch.ones(6))
    torch.testing.assert_close(cx.mean(dim=(1, 2, 3)), ct @ idx, rtol=0, atol=1e-5)
    for i in range(6):  # cutmix pastes pixels: every value is i or the partner's class
        assert set(cx[i].unique().tolist()) <= {float(j) for j in range(6) if ct[i, j] > 0}
    aug = D.Augment(mixup_alpha=0.5, cutmix_alpha=0.5)
    ax, at = aug.mix(x, y, 6, torch.Generator().manual_seed(3))
    assert ax.shape == x.shape and at.shape == (6, 6)


# ------------------------------------------------------------------ the real Fashion-MNIST


@pytest.mark.skipif(not (REAL_FMNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"Fashion-MNIST not installed at {REAL_FMNIST} "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    tr = D.load_dataset("fashion-mnist", "train")
    te = D.load_dataset("fashion-mnist", "test", subset=0.1, seed=0)
    assert tr.images.shape == (60000, 1, 28, 28) and tr.labels.shape == (60000,)
    assert torch.equal(torch.bincount(tr.labels), torch.full((10,), 6000))
    # the published mean/std normalize the training set to ~N(0, 1)
    assert abs(tr.images.mean().item()) < 1e-3 and abs(tr.images.std().item() - 1) < 1e-3
    assert len(te) == 1000 and torch.equal(torch.bincount(te.labels), torch.full((10,), 100))
    full_te = D.load_dataset("fashion-mnist", "test")
    assert full_te.images.shape == (10000, 1, 28, 28)
    assert torch.equal(full_te.images[torch.from_numpy(te.indices)], te.images)
