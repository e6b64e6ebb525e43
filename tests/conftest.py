"""Shared test settings: deterministic, single-threaded-friendly, headless plotting."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def fashion_mnist_available() -> bool:
    return os.path.exists(FMNIST) or bool(os.environ.get("LANDSCAPE_DATA"))


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist or set LANDSCAPE_DATA")
