"""Dataset names and specs: classes, channels, image size and published mean/std."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LandscapeError


@dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset: classes, channels, size, normalization."""
    name: str
    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_SPECS = {
    "fashion-mnist": DatasetSpec("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,)),
    "cifar10": DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762)),
}
_ALIASES = {"fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
            "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
            "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100",
            "imagefolder": "imagefolder", "image-folder": "imagefolder",
            "image_folder": "imagefolder"}


def names() -> list[str]:
    """Dataset names ``load_dataset`` knows."""
    return ["fashion-mnist", "cifar10", "cifar100", "imagefolder"]


def canonical_name(name: str) -> str:
    """The canonical spelling of a dataset name (``CIFAR-10`` -> ``cifar10``)."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise LandscapeError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return _ALIASES[key]


def dataset_spec(name: str) -> DatasetSpec:
    """Classes, channels, image size and published mean/std of a named dataset."""
    canon = canonical_name(name)
    if canon == "imagefolder":
        raise LandscapeError("imagefolder has no fixed spec; load it with "
                             "load_dataset('imagefolder', root=PATH) and use ImageData.spec")
    return _SPECS[canon]
