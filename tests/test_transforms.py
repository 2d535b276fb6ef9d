"""Augmentation: every transform keeps the shape, is reproducible with a seed, and does what it
says on a tiny hand-made image."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.data import transforms as T


def images(n=4, c=3, h=6, w=6, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def impulse(h=7, w=7, r=3, c=3):
    x = np.zeros((1, 1, h, w), np.float32)
    x[0, 0, r, c] = 1.0
    return x


ALL = [lambda s: T.RandomHorizontalFlip(seed=s), lambda s: T.RandomVerticalFlip(seed=s),
       lambda s: T.RandomCrop(6, padding=2, seed=s), lambda s: T.RandomScale((0.8, 1.2), seed=s),
       lambda s: T.RandomShift(0.3, seed=s), lambda s: T.RandomRotation(15, seed=s),
       lambda s: T.GaussianNoise(0.1, seed=s), lambda s: T.GaussianBlur((0.5, 1.5), seed=s),
       lambda s: T.ColorJitter(0.3, 0.3, 0.3, seed=s), lambda s: T.PCALighting(0.5, seed=s),
       lambda s: T.Compose([T.RandomHorizontalFlip(seed=s), T.RandomRotation(10, seed=s + 1)])]


@pytest.mark.parametrize("make", ALL)
def test_shape_dtype_reproducibility_and_no_mutation(make):
    x = images()
    original = x.copy()
    a, b, c = make(1)(x), make(1)(x), make(2)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)                 # same seed, same result
    assert not np.array_equal(a, c)                     # another seed, another result
    np.testing.assert_array_equal(x, original)          # the input is not modified
    assert make(1)(x[0]).shape == x[0].shape            # a single (C, H, W) image
    fnn.manual_seed(3)                                  # seed=None: fastnn's generator
    d = make(None)(x) if make is not ALL[-1] else a
    fnn.manual_seed(3)
    e = make(None)(x) if make is not ALL[-1] else a
    np.testing.assert_array_equal(d, e)


def test_flips_flip():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(x), x[..., ::-1, :])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    flipped = T.RandomHorizontalFlip(p=0.5, seed=0)(np.repeat(x, 200, axis=0))
    share = np.mean([np.array_equal(f, x[0, ..., ::-1]) for f in flipped])
    assert 0.4 < share < 0.6


def test_crop_with_padding_shifts_by_at_most_the_padding():
    x = impulse()
    moves = set()
    for s in range(40):
        out = T.RandomCrop(7, padding=2, seed=s)(x)
        assert out.sum() in (0.0, 1.0)                  # content moves whole, or is cropped away
        if out.sum():
            r, c = np.argwhere(out[0, 0])[0]
            assert abs(r - 3) <= 2 and abs(c - 3) <= 2
            moves.add((r - 3, c - 3))
    assert len(moves) > 5
    assert T.RandomCrop(4, seed=0)(images()).shape == (4, 3, 4, 4)


def test_shift_moves_a_pixel_by_whole_pixels():
    x = impulse()
    for s in range(10):
        out = T.RandomShift(0.3, seed=s)(x)            # at most round(2.1) = 2 pixels
        r, c = np.argwhere(out[0, 0] > 0)[0]
        assert out.sum() == pytest.approx(1.0) and out[0, 0, r, c] == pytest.approx(1.0)
        assert abs(r - 3) <= 2 and abs(c - 3) <= 2


def test_rotation_by_90_degrees_is_rot90_and_zero_is_identity():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    np.testing.assert_allclose(T.RandomRotation((90, 90))(x), np.rot90(x, 1, axes=(2, 3)), atol=1e-9)
    np.testing.assert_allclose(T.RandomRotation((0, 0))(x), x)
    small = T.RandomRotation(5, seed=0)(images(c=1, h=9, w=9))
    assert small.shape == (4, 1, 9, 9)


def test_scale_zooms_about_the_centre():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    out = T.RandomScale((2.0, 2.0))(x)
    assert out[0, 0, 2, 2] == x[0, 0, 2, 2]                 # the centre stays
    assert out[0, 0, 0, 0] == x[0, 0, 1, 1]                 # corner samples halfway to the centre
    assert out[0, 0, 0, 1] == pytest.approx((x[0, 0, 1, 1] + x[0, 0, 1, 2]) / 2)   # bilinear
    shrunk = T.RandomScale((0.5, 0.5))(np.ones((1, 1, 5, 5)))
    assert shrunk[0, 0, 0, 0] == 0 and shrunk[0, 0, 2, 2] == 1                     # outside is fill


def test_gaussian_noise_statistics():
    x = np.zeros((8, 3, 16, 16), np.float32)
    noise = T.GaussianNoise(std=0.2, seed=0)(x)
    assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(0.2, rel=0.05)


def test_gaussian_blur_spreads_an_impulse_by_the_kernel():
    out = T.GaussianBlur(sigma=1.0)(impulse(9, 9, 4, 4))[0, 0]
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    np.testing.assert_allclose(out[1:8, 1:8], np.outer(k, k), rtol=1e-6)
    assert out.sum() == pytest.approx(1.0, rel=1e-6)
    flat = np.full((1, 2, 5, 5), 0.7, np.float32)
    np.testing.assert_allclose(T.GaussianBlur(sigma=2.0)(flat), flat, rtol=1e-6)   # constants stay


def test_color_jitter_brightness_contrast_saturation():
    x = images(n=6)
    bright = T.ColorJitter(brightness=0.5, seed=0)(x)
    ratio = bright / x
    for i in range(6):                                  # one factor per image, within [0.5, 1.5]
        assert np.ptp(ratio[i]) < 1e-5 and 0.5 <= ratio[i].mean() <= 1.5
    assert np.ptp(ratio.reshape(6, -1).mean(1)) > 0.01
    flat = T.ColorJitter(contrast=(0, 0))(x)            # contrast 0: every pixel the mean grey level
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(axis=(1, 2))
    np.testing.assert_allclose(flat, np.broadcast_to(gray[:, None, None, None], x.shape), rtol=1e-5)
    grey = T.ColorJitter(saturation=(0, 0))(x)          # saturation 0: greyscale
    np.testing.assert_allclose(grey[:, 0], grey[:, 1], atol=1e-6)
    np.testing.assert_allclose(grey[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], rtol=1e-5)
    with pytest.raises(ValueError, match="3-channel"):
        T.ColorJitter(saturation=0.5)(images(c=1))


def test_pca_lighting_adds_an_eigenvector_combination_per_image():
    x = images()
    out = T.PCALighting(alphastd=0.5, seed=0)(x)
    shift = (out - x).astype(np.float64)
    assert np.ptp(shift, axis=(2, 3)).max() < 1e-6         # the same offset at every pixel of an image
    alphas = np.linalg.solve(T.IMAGENET_EIGVEC, shift[:, :, 0, 0].T).T / T.IMAGENET_EIGVAL
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(alphas, rng.normal(0, 0.5, (4, 3)), rtol=1e-3, atol=1e-4)
    fitted = T.PCALighting().fit(x)
    assert fitted.eigvec.shape == (3, 3) and np.all(np.diff(fitted.eigval) <= 0)


def test_bad_input():
    with pytest.raises(TypeError, match="float"):
        T.RandomHorizontalFlip()(np.zeros((1, 1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="shape"):
        T.GaussianNoise()(np.zeros((2, 2), np.float32))
