"""ImageFolder trees: ``root[/<split>]/<class>/<image>`` decoded with PIL."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .files import _file_key, _frozen

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


def _image_folder(root: Path, split: str,
                  img_size: None | int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray,
                                                                       tuple[str, ...]]:
    if not root.is_dir():
        raise LandscapeError(f"image folder {root} does not exist "
                             f"(expected {root}/<class>/<image>)")
    if (root / split).is_dir():
        base = root / split
    elif (root / "train").is_dir() or (root / "test").is_dir():
        raise LandscapeError(f"image folder {root} has train/test sub-folders but no {split}/")
    else:
        base = root
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise LandscapeError(f"no class folders in {base} (expected {base}/<class>/<image>)")
    files: list[tuple[str, int, int]] = []
    labels = []
    for i, cls in enumerate(classes):
        found = sorted(p for p in (base / cls).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise LandscapeError(f"class folder {base / cls} holds no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        files.extend(_file_key(p) for p in found)
        labels.extend([i] * len(found))
    if isinstance(img_size, int):
        size: tuple[int, int] | None = (img_size, img_size)
    elif img_size is None:
        size = None
    else:
        size = (int(img_size[0]), int(img_size[1]))
    if size is not None and min(size) < 1:
        raise LandscapeError(f"img_size must be positive, got {img_size!r}")
    u8 = _decode_image_folder(tuple(files), size)
    return u8, _frozen(np.asarray(labels, dtype=np.int64)), tuple(classes)


def _resize_center_crop(img: Any, size: tuple[int, int]) -> Any:
    from PIL import Image

    h, w = size
    if img.height == h and img.width == w:
        return img
    scale = max(h / img.height, w / img.width)
    nh, nw = max(h, round(img.height * scale)), max(w, round(img.width * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return img.crop((left, top, left + w, top + h))


@functools.lru_cache(maxsize=4)
def _decode_image_folder(files: tuple[tuple[str, int, int], ...],
                         size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path, _, _ in files:
        try:
            # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: refuse both
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()
                    gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
                    im = im.convert("L" if gray else "RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise LandscapeError(f"refusing image {path}: {e}".replace(
                "could be decompression bomb DOS attack.",
                "a possible decompression bomb")) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise LandscapeError(f"cannot decode image {path}: {e}") from None
        if size is not None:
            im = _resize_center_crop(im, size)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    for (path, _, _), a in zip(files, arrays, strict=True):
        if a.shape[1:] != arrays[0].shape[1:]:
            raise LandscapeError(f"images differ in size ({arrays[0].shape[2]}x{arrays[0].shape[1]}"
                                 f" in {files[0][0]}, {a.shape[2]}x{a.shape[1]} in {path}); pass "
                                 "img_size to resize and center-crop them")
    if any(a.shape[0] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    return _frozen(np.stack(arrays))
