"""Data augmentation for image batches, in NumPy.

Every transform is a callable on a float batch (N, C, H, W) (a single image (C, H, W) works too) that returns
a new array of the same dtype; the input is never modified. Random parameters are drawn per image. With
`seed=s` a transform owns a generator seeded with s (the same seed gives the same sequence of outputs);
with seed=None it draws from fastnn's generator, so fastnn.manual_seed makes a whole run reproducible.

    aug = Compose([RandomHorizontalFlip(), RandomCrop(28, padding=2), ColorJitter(brightness=0.2)])
    xb = aug(xb)

Geometric transforms other than flips and crops (RandomScale, RandomShift, RandomRotation) map every output
pixel back into the input (about the image centre) and sample it bilinearly; pixels that fall outside are
`fill` (0).
"""
import math

import numpy as np

from ..random import generator

__all__ = ["Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomCrop", "RandomScale", "RandomShift",
           "RandomRotation", "GaussianNoise", "GaussianBlur", "ColorJitter", "PCALighting", "affine"]


def _batch(owner, x):
    """(x as an (N, C, H, W) float array, whether the input was a single image)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{owner!r}: expected a float image batch, got dtype {x.dtype}")
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"{owner!r}: expected images of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    return x, False


def _range(owner, name, value, center=None, low=None):
    """A number v gives (center − v, center + v) (or (−v, v)); a pair is taken as (min, max)."""
    if isinstance(value, (tuple, list)):
        lo, hi = (float(v) for v in value)
    else:
        v = float(value)
        if v < 0:
            raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
        c = 0.0 if center is None else center
        lo, hi = c - v, c + v
    if low is not None:
        lo = max(lo, low)
    if lo > hi:
        raise ValueError(f"{owner}: {name} range ({lo}, {hi}) is empty")
    return lo, hi


class Transform:
    """Base class: `seed` as described in the module docstring; subclasses implement `apply(x, rng)` on an
    (N, C, H, W) batch."""

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    @property
    def rng(self):
        return generator() if self._rng is None else self._rng

    def __call__(self, x):
        x, single = _batch(self, x)
        out = self.apply(x, self.rng)
        return out[0] if single else out

    def apply(self, x, rng):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order.

    Each keeps its own seed (or fastnn's generator).

    Parameters
    ----------
    transforms : sequence of callable
        The transforms.

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> aug = T.Compose([T.RandomHorizontalFlip(seed=0), T.RandomCrop(8, padding=1, seed=0)])
    >>> aug(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, transforms):
        super().__init__()
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def apply(self, x, rng):
        for t in self.transforms:
            x = t(x)
        return x


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    p : float, default 0.5
        Probability of flipping an image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> np.array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    True
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        self.p = float(p)

    def apply(self, x, rng):
        out = x.copy()
        flip = rng.random(len(x)) < self.p
        out[flip] = x[flip][..., ::-1]
        return out


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each image top-bottom with probability ``p``.

    Parameters
    ----------
    p : float, default 0.5
        Probability of flipping an image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> np.array_equal(T.RandomVerticalFlip(p=1.0)(x), x[..., ::-1, :])
    True
    """

    def apply(self, x, rng):
        out = x.copy()
        flip = rng.random(len(x)) < self.p
        out[flip] = x[flip][..., ::-1, :]
        return out


class RandomCrop(Transform):
    """Pad each side by ``padding`` pixels of ``fill``, then cut a random window of ``size``.

    With ``size`` equal to the image size this is a random shift of at most ``padding`` pixels.

    Parameters
    ----------
    size : int or tuple of int
        ``size × size`` or ``(h, w)``.
    padding : int, default 0
        Pixels added on each side first.
    fill : float, default 0.0
        Value of pixels that come from outside the image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
    - Output: ``(N, C, h, w)``.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> T.RandomCrop(6)(x).shape
    (4, 3, 6, 6)
    >>> T.RandomCrop(8, padding=2, seed=0)(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, size, padding=0, fill=0.0, seed=None):
        super().__init__(seed)
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        self.padding = int(padding)
        self.fill = float(fill)

    def apply(self, x, rng):
        p, (h, w) = self.padding, self.size
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        H, W = padded.shape[2:]
        if h > H or w > W:
            raise ValueError(f"{self!r}: crop {self.size} is larger than the padded image ({H}, {W})")
        tops = rng.integers(0, H - h + 1, len(x))
        lefts = rng.integers(0, W - w + 1, len(x))
        return np.stack([padded[i, :, t:t + h, l:l + w] for i, (t, l) in enumerate(zip(tops, lefts))])


def affine(x, matrix, offset, fill=0.0):
    """Inverse-mapped bilinear resampling of a batch of images.

    Output pixel ``p = (row, col)`` of image ``i`` takes the input at ``matrix[i] @ (p − c) + c + offset[i]``,
    ``c`` the image centre ``((H − 1)/2, (W − 1)/2)``; pixels that fall outside are ``fill``. The geometric
    transforms are built on it.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Float images.
    matrix : ndarray, shape (N, 2, 2)
        Per-image linear maps from output to input coordinates.
    offset : ndarray, shape (N, 2)
        Per-image shifts in (row, col) pixels.
    fill : float, default 0.0
        Value outside the input.

    Returns
    -------
    ndarray
        The resampled images, same shape and dtype.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> shifted = fnn.data.transforms.affine(x, np.eye(2)[None], np.array([[0.0, 1.0]]))   # take from one column right
    >>> shifted[0, 0]
    array([[1., 2., 0.],
           [4., 5., 0.],
           [7., 8., 0.]], dtype=float32)
    """
    n, _, H, W = x.shape
    rows, cols = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    c = np.array([(H - 1) / 2, (W - 1) / 2])
    p = np.stack([rows.ravel() - c[0], cols.ravel() - c[1]])          # (2, H·W)
    out = np.empty_like(x)
    for i in range(n):
        src_r, src_c = matrix[i] @ p + (c + offset[i])[:, None]
        r0, c0 = np.floor(src_r), np.floor(src_c)
        fr, fc = src_r - r0, src_c - c0
        acc = np.zeros((x.shape[1], H * W))
        for dr, wr in ((0, 1 - fr), (1, fr)):
            for dc, wc in ((0, 1 - fc), (1, fc)):
                rr, cc = (r0 + dr).astype(np.int64), (c0 + dc).astype(np.int64)
                inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
                vals = np.where(inside, x[i][:, np.clip(rr, 0, H - 1), np.clip(cc, 0, W - 1)], fill)
                acc += (wr * wc) * vals
        out[i] = acc.reshape(x.shape[1], H, W)
    return out


class RandomScale(Transform):
    """Zoom each image about its centre by a factor drawn uniformly from ``scale`` (> 1 enlarges).

    Output pixels are mapped back into the input and sampled bilinearly.

    Parameters
    ----------
    scale : tuple of float, default (0.9, 1.1)
        ``(min, max)`` zoom factors.
    fill : float, default 0.0
        Value of pixels that come from outside the image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> T.RandomScale((0.8, 1.2), seed=0)(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, scale=(0.9, 1.1), fill=0.0, seed=None):
        super().__init__(seed)
        self.scale = _range("RandomScale", "scale", scale, center=1.0, low=1e-6)
        self.fill = float(fill)

    def apply(self, x, rng):
        s = rng.uniform(*self.scale, len(x))
        matrix = np.eye(2)[None] / s[:, None, None]
        return affine(x, matrix, np.zeros((len(x), 2)), self.fill)


class RandomShift(Transform):
    """Translate each image by a whole number of pixels.

    At most ``max_shift·H`` rows and ``max_shift·W`` columns each way (a fraction of the size, as torchvision's
    ``translate``, which also rounds).

    Parameters
    ----------
    max_shift : float, default 0.1
        The largest shift, as a fraction of the size.
    fill : float, default 0.0
        Value of pixels that come from outside the image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> y = T.RandomShift(max_shift=0.25, seed=0)(x)
    >>> y.shape, y.dtype
    ((4, 3, 8, 8), dtype('float32'))
    """

    def __init__(self, max_shift=0.1, fill=0.0, seed=None):
        super().__init__(seed)
        self.max_shift = float(max_shift)
        if not 0 <= self.max_shift <= 1:
            raise ValueError(f"RandomShift: max_shift must be in [0, 1], got {max_shift}")
        self.fill = float(fill)

    def apply(self, x, rng):
        H, W = x.shape[2:]
        mr, mc = self.max_shift * H, self.max_shift * W
        shift = np.stack([np.round(rng.uniform(-mr, mr, len(x))), np.round(rng.uniform(-mc, mc, len(x)))], 1)
        return affine(x, np.broadcast_to(np.eye(2), (len(x), 2, 2)), -shift, self.fill)


class RandomRotation(Transform):
    """Rotate each image about its centre by an angle drawn uniformly from ``degrees``.

    Positive angles turn the picture counter-clockwise, as torchvision; output pixels are sampled bilinearly.

    Parameters
    ----------
    degrees : float or tuple of float, default 10.0
        ``d`` means ``(-d, d)``; or ``(min, max)``.
    fill : float, default 0.0
        Value of pixels that come from outside the image.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> T.RandomRotation(degrees=15, seed=0)(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, degrees=10.0, fill=0.0, seed=None):
        super().__init__(seed)
        self.degrees = _range("RandomRotation", "degrees", degrees)
        self.fill = float(fill)

    def apply(self, x, rng):
        a = np.deg2rad(rng.uniform(*self.degrees, len(x)))
        cos, sin = np.cos(a), np.sin(a)
        # output (row, col) -> input: rotate by −angle in (x right, y up) coordinates
        matrix = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1)
        matrix = np.where(np.abs(matrix) < 1e-12, 0.0, matrix)
        return affine(x, matrix, np.zeros((len(x), 2)), self.fill)


class GaussianNoise(Transform):
    """Add independent ``N(0, std²)`` noise to every value.

    Parameters
    ----------
    std : float, default 0.1
        Standard deviation of the noise.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> noise = T.GaussianNoise(std=0.05, seed=0)(x) - x
    >>> bool(abs(noise.std() - 0.05) < 0.01)
    True
    """

    def __init__(self, std=0.1, seed=None):
        super().__init__(seed)
        self.std = float(std)

    def apply(self, x, rng):
        return (x + self.std * rng.standard_normal(x.shape)).astype(x.dtype)


def _gaussian_kernel(sigma, radius):
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class GaussianBlur(Transform):
    """Separable Gaussian blur, edges reflected.

    Parameters
    ----------
    sigma : float or tuple of float, default 1.0
        The blur's standard deviation, or ``(min, max)`` to draw one per image.
    kernel_size : int or None, default None
        An odd kernel size; None gives radius ``ceil(3·sigma)``.
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> y = T.GaussianBlur(sigma=1.0)(x)
    >>> bool(y.std() < x.std())            # smoother
    True
    """

    def __init__(self, sigma=1.0, kernel_size=None, seed=None):
        super().__init__(seed)
        self.sigma = _range("GaussianBlur", "sigma", sigma) if isinstance(sigma, (tuple, list)) \
            else (float(sigma), float(sigma))
        if self.sigma[0] <= 0:
            raise ValueError(f"GaussianBlur: sigma must be > 0, got {sigma}")
        if kernel_size is not None and (int(kernel_size) < 1 or int(kernel_size) % 2 == 0):
            raise ValueError(f"GaussianBlur: kernel_size must be odd and >= 1, got {kernel_size}")
        self.kernel_size = None if kernel_size is None else int(kernel_size)

    def apply(self, x, rng):
        sigmas = rng.uniform(*self.sigma, len(x)) if self.sigma[0] != self.sigma[1] else [self.sigma[0]] * len(x)
        out = np.empty_like(x)
        for i, s in enumerate(sigmas):
            r = self.kernel_size // 2 if self.kernel_size else int(math.ceil(3 * s))
            k = _gaussian_kernel(s, r)
            img = x[i].astype(np.float64)
            for axis in (1, 2):
                pad = [(0, 0)] * 3
                pad[axis] = (r, r)
                p = np.pad(img, pad, mode="symmetric")
                n = img.shape[axis]
                img = sum(k[j] * np.take(p, range(j, j + n), axis=axis) for j in range(2 * r + 1))
            out[i] = img
        return out


def _gray(x):
    """ITU-R 601 luma of (N, 3, H, W) RGB images, (N, 1, H, W)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


class ColorJitter(Transform):
    """Random brightness, contrast and saturation, applied in that order.

    Per-image factors ``f`` are drawn uniformly from ``[max(0, 1 − v), 1 + v]`` (or a given ``(min, max)``):
    brightness ``x·f``; contrast ``m + f·(x − m)``, ``m`` the image's mean (grey level for 3 channels); saturation
    (3-channel RGB only) ``g + f·(x − g)``, ``g`` each pixel's grey level.

    Parameters
    ----------
    brightness : float or tuple of float, default 0.0
        Strength ``v`` or ``(min, max)`` factors.
    contrast : float or tuple of float, default 0.0
        Strength or factors.
    saturation : float or tuple of float, default 0.0
        Strength or factors (RGB only).
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, seed=0)(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, seed=None):
        super().__init__(seed)
        self.brightness = _range("ColorJitter", "brightness", brightness, center=1.0, low=0.0)
        self.contrast = _range("ColorJitter", "contrast", contrast, center=1.0, low=0.0)
        self.saturation = _range("ColorJitter", "saturation", saturation, center=1.0, low=0.0)

    def apply(self, x, rng):
        n, c = x.shape[:2]
        out = x.astype(np.float64)
        shape = (n, 1, 1, 1)
        if self.brightness != (1.0, 1.0):
            out = out * rng.uniform(*self.brightness, n).reshape(shape)
        if self.contrast != (1.0, 1.0):
            mean = (_gray(out) if c == 3 else out).mean(axis=(1, 2, 3), keepdims=True)
            out = mean + rng.uniform(*self.contrast, n).reshape(shape) * (out - mean)
        if self.saturation != (1.0, 1.0):
            if c != 3:
                raise ValueError(f"{self!r}: saturation needs 3-channel RGB images, got {c} channels")
            g = _gray(out)
            out = g + rng.uniform(*self.saturation, n).reshape(shape) * (out - g)
        return out.astype(x.dtype)


# ImageNet RGB eigenvalues and eigenvectors (columns) used by AlexNet-style lighting (fb.resnet.torch).
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]])


class PCALighting(Transform):
    """AlexNet's lighting noise along the principal components of the RGB colours.

    Adds ``Σ_k α_k·λ_k·v_k`` to every pixel of an image, ``α_k ~ N(0, alphastd²)`` per image, ``λ_k`` and ``v_k``
    the eigenvalues and eigenvectors (columns of ``eigvec``) of the RGB covariance — ImageNet's by default;
    ``fit(x)`` computes them from a batch.

    Parameters
    ----------
    alphastd : float, default 0.1
        Standard deviation of the ``α_k``.
    eigval : array_like or None, default None
        The eigenvalues (ImageNet's when None).
    eigvec : array_like or None, default None
        The eigenvectors, as columns (ImageNet's when None).
    seed : int or None, default None
        Seed of the transform's own generator (the same seed gives the same outputs); None draws from fastnn's
        generator (:func:`fastnn.manual_seed`).

    Shape
    -----
    - Input: a float batch ``(N, C, H, W)`` or one image ``(C, H, W)``; never modified.
    - Output: a new array of the same shape and dtype.

    Raises
    ------
    TypeError
        When called on a non-float array.
    ValueError
        When called on an array that is not 3-D or 4-D, or for an invalid setting.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> T = fnn.data.transforms
    >>> x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    >>> light = T.PCALighting(alphastd=0.1, seed=0).fit(x)
    >>> light(x).shape
    (4, 3, 8, 8)
    """

    def __init__(self, alphastd=0.1, eigval=None, eigvec=None, seed=None):
        super().__init__(seed)
        self.alphastd = float(alphastd)
        self.eigval = IMAGENET_EIGVAL.copy() if eigval is None else np.asarray(eigval, dtype=np.float64)
        self.eigvec = IMAGENET_EIGVEC.copy() if eigvec is None else np.asarray(eigvec, dtype=np.float64)
        c = len(self.eigval)
        if self.eigvec.shape != (c, c):
            raise ValueError(f"PCALighting: eigvec must be ({c}, {c}) for {c} eigenvalues, got {self.eigvec.shape}")

    def fit(self, x):
        """Eigen-decomposition of the channel covariance over all pixels of the (N, C, H, W) batch x."""
        x, _ = _batch(self, x)
        pixels = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]).astype(np.float64)
        lam, vec = np.linalg.eigh(np.cov(pixels, rowvar=False))
        order = np.argsort(lam)[::-1]
        self.eigval, self.eigvec = np.maximum(lam[order], 0), vec[:, order]
        return self

    def apply(self, x, rng):
        if x.shape[1] != len(self.eigval):
            raise ValueError(f"{type(self).__name__}: images have {x.shape[1]} channels, eigval has "
                             f"{len(self.eigval)}")
        alpha = rng.normal(0.0, self.alphastd, (len(x), len(self.eigval)))
        shift = (alpha * self.eigval) @ self.eigvec.T                          # (N, C)
        return (x + shift[:, :, None, None]).astype(x.dtype)

    def __repr__(self):
        return f"PCALighting(alphastd={self.alphastd})"
