"""Training augmentation: random pad-and-crop and flip, Mixup and CutMix."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import LandscapeError


class Augment:
    """The paper's training augmentation on a normalized batch: random pad-and-crop, random flip.

    Padding is zero in pixel space, i.e. the normalized value ``-mean/std`` per channel when
    ``mean``/``std`` are given (pass ``data.mean, data.std``); without them the padding is 0
    in the normalized space (the mean pixel). ``mixup_alpha``/``cutmix_alpha`` are kept for
    ``Augment.mix``; ``__call__`` never mixes (mixing changes the targets).
    """

    def __init__(self, pad: int = 4, flip: bool = True, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        if int(pad) != pad or pad < 0:
            raise LandscapeError(f"pad must be a non-negative integer, got {pad!r}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise LandscapeError("mixup/cutmix alpha must be >= 0")
        self.pad, self.flip = int(pad), bool(flip)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        if (mean is None) != (std is None):
            raise LandscapeError("give both mean and std for the padding value, or neither")
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)

    def __repr__(self) -> str:
        return (f"Augment(pad={self.pad}, flip={self.flip}, mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}, mean={self.mean}, std={self.std})")

    def fill_value(self, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The padding value per channel, shape (C,): ``-mean/std`` or zeros."""
        if self.mean is None:
            return torch.zeros(channels, device=device, dtype=dtype)
        m = torch.tensor(self.mean, dtype=torch.float64)
        s = torch.tensor(self.std, dtype=torch.float64)
        fill = (-m / s).to(device=device, dtype=dtype)
        return fill.expand(channels) if fill.numel() == 1 else fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Randomly shifted (by up to ``pad`` pixels, zero-filled) and flipped copy of ``x``."""
        if x.dim() != 4:
            raise LandscapeError(f"Augment expects a batch (N, C, H, W), "
                                 f"got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        gdev = generator.device if generator is not None else torch.device("cpu")
        out = x
        if self.pad > 0:
            p = self.pad
            dy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            fill = self.fill_value(c, x.device, x.dtype).view(1, c, 1, 1)
            padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p:p + h, p:p + w] = x
            rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
            cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
            bi = torch.arange(b, device=x.device)[:, None, None]
            out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
            # a fresh NCHW copy: with one channel .contiguous() keeps the NHWC strides, convs
            # then run channels_last, and a 1x1 stride-2 conv's double backward crashes the
            # process on CPU (torch 2.13: double free) in the Hessian of a user ResNet
            out = out.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
        if self.flip:
            flip = torch.rand(b, generator=generator, device=gdev).to(x.device) < 0.5
            out = torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)
        return out

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mix`` with this object's alphas."""
        return mix(x, y, num_classes, self.mixup_alpha, self.cutmix_alpha, generator)


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """A Beta(alpha, alpha) draw from the generator (inverse CDF of a uniform draw)."""
    from scipy.special import betaincinv

    gdev = generator.device if generator is not None else torch.device("cpu")
    u = float(torch.rand((), generator=generator, device=gdev, dtype=torch.float64))
    return float(betaincinv(alpha, alpha, min(max(u, 1e-12), 1 - 1e-12)))


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0, generator: torch.Generator | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch with a permutation of itself; returns (x, soft targets).

    One mixing ratio per batch, ``lam ~ Beta(alpha, alpha)``; with both alphas > 0 each batch
    uses one of the two with probability 1/2. CutMix pastes a box of area ``1 - lam`` (clipped
    to the image; ``lam`` is then the kept area). Targets are ``lam * onehot(y) + (1 - lam) *
    onehot(y[perm])`` (``y`` may already be soft, shape (B, K)). Alphas 0: (x, onehot(y)).
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise LandscapeError("mixup/cutmix alpha must be >= 0")
    if y.dim() == 1:
        target = torch.nn.functional.one_hot(y.long(), num_classes).to(x.dtype)
    else:
        target = y.to(x.dtype)
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return x, target
    out, mixed, _ = mix_targets(x, target, mixup_alpha, cutmix_alpha, generator)
    return out, mixed


def mix_targets(x: torch.Tensor, target: torch.Tensor, mixup_alpha: float, cutmix_alpha: float,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, list[int], bool]]:
    """timm's batch-mode Mixup or CutMix of ``x`` with a permutation of itself, soft
    ``target`` (B, K) mixed alike; returns (images, targets, (lam, permutation, cutmix?)). The
    draws, in order: the Mixup-or-CutMix coin (both alphas > 0), lam ~ Beta(alpha, alpha), the
    permutation, the box centre (CutMix; lam becomes the kept area)."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    b = x.shape[0]
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return x, target, (1.0, list(range(b)), False)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = bool(torch.rand((), generator=generator, device=gdev) < 0.5)
    else:
        use_cutmix = cutmix_alpha > 0
    lam = _beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    perm = torch.randperm(b, generator=generator, device=gdev).to(x.device)
    if use_cutmix:
        h, w = x.shape[-2:]
        r = math.sqrt(1.0 - lam)
        ch, cw = int(h * r), int(w * r)
        cy = int(torch.randint(0, h, (), generator=generator, device=gdev))
        cx = int(torch.randint(0, w, (), generator=generator, device=gdev))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        out = lam * x + (1.0 - lam) * x[perm]
    return out, lam * target + (1.0 - lam) * target[perm], (lam, perm.tolist(), use_cutmix)


#: The paper's RandAugment (timm's string in every HDVW ``configs/*_vit.yaml``).
RAND_AUGMENT = "rand-m9-n2-mstd1.0"


def parse_rand_augment(spec: str) -> dict[str, float]:
    """timm's ``rand-m9-n2-mstd1.0`` as ``{"m": 9, "n": 2, "mstd": 1.0}`` (LandscapeError for
    another form)."""
    parts = spec.split("-")
    if not parts or parts[0] != "rand":
        raise LandscapeError(f"RandAugment spec {spec!r} must look like {RAND_AUGMENT!r}")
    out = {"m": 9.0, "n": 2.0, "mstd": 0.0}
    for p in parts[1:]:
        for key in ("mstd", "m", "n"):
            if p.startswith(key):
                try:
                    out[key] = float(p[len(key):])
                except ValueError:
                    raise LandscapeError(f"RandAugment spec {spec!r}: bad field {p!r}") from None
                break
        else:
            raise LandscapeError(f"RandAugment spec {spec!r}: unknown field {p!r}")
    return out


def _torchvision_transforms():
    """``torchvision.transforms`` or None when torchvision is not installed (not a dependency)."""
    try:
        import torchvision.transforms as T
    except ImportError:
        return None
    return T


class RandAugmentStep:
    """torchvision's ``RandAugment(num_ops=n, magnitude=m)`` on a normalized batch: each image is
    taken back to [0, 1] pixels (``x·std + mean``), to uint8, augmented, and normalized again.
    Seeded by the generator (torchvision draws from torch's global RNG, which is forked)."""

    def __init__(self, transforms: object, spec: str = RAND_AUGMENT,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                 ) -> None:
        p = parse_rand_augment(spec)
        self.spec, self.m, self.n = spec, int(p["m"]), int(p["n"])
        self.op = transforms.RandAugment(num_ops=self.n, magnitude=self.m)  # type: ignore
        self.mean = torch.tensor(mean if mean is not None else [0.0]).view(1, -1, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0]).view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return f"RandAugment({self.spec}: torchvision num_ops={self.n}, magnitude={self.m})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        gdev = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2 ** 62, (), generator=generator, device=gdev))
        mean, std = self.mean.to(x), self.std.to(x)
        pix = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = torch.stack([self.op(img) for img in pix.cpu()]).to(x.device)
        return (out.to(x.dtype) / 255 - mean) / std


def rand_augment(spec: str = RAND_AUGMENT, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> tuple[RandAugmentStep | None, str]:
    """(the step, what it does) for timm's RandAugment ``spec``: torchvision's RandAugment when
    torchvision is importable (timm's magnitude noise ``mstd`` has no torchvision counterpart:
    stated), else None and the stated deviation. An empty ``spec``: (None, "no RandAugment")."""
    if not spec:
        return None, "no RandAugment"
    p = parse_rand_augment(spec)
    transforms = _torchvision_transforms()
    if transforms is None:
        return None, (f"RandAugment {spec} NOT applied: torchvision is not installed "
                      "(deviation from the paper's training transform)")
    step = RandAugmentStep(transforms, spec, mean, std)
    note = (f"; magnitude fixed at {int(p['m'])} (timm's mstd{p['mstd']:g} noise has no "
            "torchvision counterpart)") if p["mstd"] else ""
    return step, f"RandAugment {spec} (torchvision num_ops={int(p['n'])}, " \
                 f"magnitude={int(p['m'])}{note})"
