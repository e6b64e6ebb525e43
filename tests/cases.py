"""Shared tiny models and data for the tests (imported as ``cases``; no test module imports
another). Fixtures built on them live in ``conftest.py``.

- tiny float64 models with dense references: :class:`TinyMLP`, :class:`TinyCNN` (BN, dropout),
  :class:`TinyAttention` (SDPA), :func:`make`; :func:`dense_ggn` / :func:`dense_ef` (the GGN
  and empirical Fisher by hand);
- feature-map toys: :class:`DepthwiseCircular` (exact DFT transfer), :class:`Chain`;
- data: :func:`write_fmnist` (the one fake Fashion-MNIST writer), :func:`idx_bytes`,
  :func:`cifar_batches` (CIFAR python-archive members);
- :data:`TINY` (the smallest ``analyze`` config), :func:`free_port`,
  :data:`needs_fashion_mnist` (skip marker for the real dataset).
"""
from __future__ import annotations

import gzip
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from landscape import data as D
from landscape.curvature import math_attention
from landscape.device import eval_mode

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def fashion_mnist_available() -> bool:
    """The real Fashion-MNIST is installed (or ``LANDSCAPE_DATA`` points at data)."""
    return os.path.exists(FMNIST) or bool(os.environ.get("LANDSCAPE_DATA"))


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST IDX files missing: "
           "apt-get install dataset-fashion-mnist or set LANDSCAPE_DATA")

MODELS = ["mlp", "cnn", "attn"]


# ---- tiny float64 models ---------------------------------------------------------------------
class TinyMLP(nn.Module):
    def __init__(self, d_in=6, hidden=10, classes=3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.unused = nn.Linear(2, 2)  # never called: gets no gradient

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class TinyCNN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4, classes)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = F.avg_pool2d(h, 4)
        return self.fc(self.drop(h.flatten(1)))


class ManualLayerNorm(nn.Module):
    """LayerNorm written out: torch 2.13's torch.func.hessian of F.layer_norm is wrong, and the
    dense reference uses torch.func.hessian."""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, t):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class TinyAttention(nn.Module):
    """Patch embedding + one self-attention layer (scaled_dot_product_attention) + head."""

    def __init__(self, dim=8, heads=2, classes=3, patch=2):
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = ManualLayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # B, N, D
        B, N, D = t.shape
        qkv = self.qkv(self.norm(t)).reshape(B, N, 3, self.heads, D // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        t = t + self.proj(a.transpose(1, 2).reshape(B, N, D))
        return self.head(torch.tanh(t).mean(1))


def tiny_cnn_data(n: int = 40, seed: int = 0):
    """(TinyCNN in float64, x (n, 1, 8, 8), y in 0..2), seeded: the spectrum tests' workload."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = TinyCNN().double()
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return m, x, y


def make(name: str, seed: int = 0, n: int = 12):
    """(model in float64 with perturbed BN stats, x, y)."""
    torch.manual_seed(seed)
    if name == "mlp":
        m, x = TinyMLP(), torch.randn(n, 6)
    elif name == "cnn":
        m, x = TinyCNN(), torch.randn(n, 1, 8, 8)
        with torch.no_grad():
            m.bn.running_mean.uniform_(-0.2, 0.2)
            m.bn.running_var.uniform_(0.5, 1.5)
            m.bn.weight.uniform_(0.5, 1.5)
    elif name == "attn":
        m, x = TinyAttention(), torch.randn(n, 1, 6, 6)
    else:
        raise ValueError(name)
    y = torch.randint(0, 3, (n,))
    return m.double(), x.double(), y


def _functional(m, x):
    names = [n for n, _ in m.named_parameters()]
    prim = tuple(p.detach() for _, p in m.named_parameters())

    def out_fn(*ps):
        with eval_mode(m), math_attention():
            return torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x,))

    return prim, out_fn


def _flat_jacobian(fn, prim, rows):
    J = torch.autograd.functional.jacobian(fn, prim)
    return torch.cat([j.reshape(rows, -1) for j in J], 1)


def dense_ggn(m, x, y):
    """J^T H_out J of the mean cross-entropy, by hand."""
    prim, out_fn = _functional(m, x)
    out = out_fn(*prim).detach()
    n, c = out.shape
    J = _flat_jacobian(out_fn, prim, n * c)
    H_out = torch.autograd.functional.hessian(lambda o: F.cross_entropy(o, y), out)
    return J.T @ H_out.reshape(n * c, n * c) @ J


def dense_ef(m, x, y):
    """(1/N) sum_n g_n g_n^T with g_n the gradient of sample n's cross-entropy, by hand."""
    prim, out_fn = _functional(m, x)
    J = _flat_jacobian(lambda *ps: F.cross_entropy(out_fn(*ps), y, reduction="none"), prim,
                       x.shape[0])
    return J.T @ J / x.shape[0]


def fmnist_model(name: str = "resnet_tiny", seed: int = 0, **kw) -> nn.Module:
    """A zoo model shaped for Fashion-MNIST (10 classes, 1 channel, 28 pixels), seeded."""
    import landscape_models
    torch.manual_seed(seed)
    return landscape_models.create(name, **{"num_classes": 10, "in_chans": 1, "img_size": 28,
                                            **kw})


# ---- feature-map toys ------------------------------------------------------------------------
class DepthwiseCircular(nn.Module):
    """Fixed depthwise 3x3 separable filter k ⊗ k with circular padding (exact DFT transfer)."""

    def __init__(self, channels: int, k1d):
        super().__init__()
        k = torch.tensor(k1d, dtype=torch.float64)
        self.register_buffer("weight", torch.outer(k, k).expand(channels, 1, 3, 3).clone())
        self.channels = channels

    def forward(self, x):
        x = F.pad(x.to(torch.float64), (1, 1, 1, 1), mode="circular")
        return F.conv2d(x, self.weight, groups=self.channels)


class Chain(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


# ---- data writers (official formats) ---------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, raw data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.tobytes()


def write_fmnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True,
                 seed: int = 0, shuffle_labels: bool = True
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The one fake Fashion-MNIST: IDX files (gzip unless ``gz`` is False) of seeded random
    images with labels ``n % 10`` (shuffled unless ``shuffle_labels`` is False) in ``folder``;
    returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        if shuffle_labels:
            rng.shuffle(labels)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte",
                                                                    labels)):
            raw = idx_bytes(arr)
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
        out[split] = (images, labels)
    return out


def cifar_batches(canon: str, seed: int = 0, n_train: int = 20, n_test: int = 10):
    """Members of the python-version archive: name -> dict, plus the true arrays."""
    rng = np.random.default_rng(seed)
    k = 10 if canon == "cifar10" else 100
    key = b"labels" if canon == "cifar10" else b"fine_labels"
    members, truth = {}, {}
    if canon == "cifar10":
        splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    else:
        splits = {"train": ["train"], "test": ["test"]}
    for split, files in splits.items():
        n_each = (n_train if split == "train" else n_test) // len(files)
        datas, labs = [], []
        for f in files:
            d = rng.integers(0, 256, size=(n_each, 3072), dtype=np.uint8)
            lab = [int(v) for v in rng.integers(0, k, size=n_each)]
            entry = {b"batch_label": f.encode(), b"data": d, key: lab,
                     b"filenames": [f"img{i}.png".encode() for i in range(n_each)]}
            if canon == "cifar100":
                entry[b"coarse_labels"] = [v // 5 for v in lab]
            members[f] = entry
            datas.append(d)
            labs.extend(lab)
        truth[split] = (np.concatenate(datas).reshape(-1, 3, 32, 32), np.array(labs))
    if canon == "cifar10":
        members["batches.meta"] = {b"label_names": [n.encode() for n in D.CIFAR10_CLASSES],
                                   b"num_cases_per_batch": 4, b"num_vis": 3072}
    else:
        members["meta"] = {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                           b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}
    return members, truth


# ---- analyze and torchrun --------------------------------------------------------------------
TINY = """
[analyze]
eval_samples = 64
samples = 32
batch_size = 32
lesion_samples = 32
surface_samples = 32
surface_grid = "-1:1:3"
surface_ygrid = "-1:1:3"
spectrum_batches = 2
spectrum_batch_size = 8
top_k = 2
lanczos_max_iter = 12
curvature_samples = 16
trace_products = 6
density_probes = 1
density_steps = 6
robustness_freqs = 3
cka_batch_size = 8
groups = 8
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
