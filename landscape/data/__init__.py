"""Image datasets as in-memory tensors: Fashion-MNIST, CIFAR-10/100, ImageFolder trees.

A dataset is decoded once into a uint8 array (cached in-process, keyed by file path, size and
mtime), then turned into one normalized float32 tensor ``(N, C, H, W)``; epochs only index it.

Where the files are looked for (``root`` argument, else ``$LANDSCAPE_DATA``, else the default):

* ``fashion-mnist``: the folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``,
  or its sub-folder ``fashion-mnist/``. Default ``/usr/share/datasets/fashion-mnist`` (Debian
  package ``dataset-fashion-mnist``). When ``$LANDSCAPE_DATA`` holds no copy, the default
  folder is still tried; an explicit ``root`` is never second-guessed.
* ``cifar10`` / ``cifar100``: a folder holding the extracted ``cifar-10-batches-py/`` /
  ``cifar-100-python/`` or the archive ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
  (also accepted: ``root`` being the extracted folder or the archive itself, or a sub-folder
  ``cifar10/`` / ``cifar100/``). Default ``$XDG_CACHE_HOME/landscape/data`` (``~/.cache/...``);
  ``download=True`` fetches the official archive there (md5 verified).
* ``imagefolder``: ``root/<class>/<image>`` (classes sorted by name), or ``root/<split>/<class>/
  <image>`` when ``root/train`` or ``root/test`` exists.

Normalization: ``images = (pixels / 255 - mean) / std`` per channel; ``ImageData.mean/std`` are
the values actually applied (zeros/ones when ``normalize=False``).
"""
from __future__ import annotations

from .augment import Augment, mix
from .cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR100_MD5,
    CIFAR100_URL,
    default_cache_root,
    download_archive,
)
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, read_idx
from .files import ENV_VAR, PathLike
from .image_data import Batches, ImageData
from .image_folder import IMAGE_EXTENSIONS
from .loading import (
    clear_cache,
    load_dataset,
    stratified_subset,
    subset_indices,
    to_float_tensor,
)
from .specs import DatasetSpec, canonical_name, dataset_spec, names

__all__ = ["CIFAR100_MD5", "CIFAR100_URL", "CIFAR10_CLASSES", "CIFAR10_MD5", "CIFAR10_URL",
           "ENV_VAR", "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "IMAGE_EXTENSIONS", "Augment",
           "Batches", "DatasetSpec", "ImageData", "PathLike", "canonical_name", "clear_cache",
           "dataset_spec", "default_cache_root", "download_archive", "load_dataset", "mix", "names",
           "read_idx", "stratified_subset", "subset_indices", "to_float_tensor"]
