"""Direct NumPy oracles for convolution and pooling (loops over kernel taps and windows: slow and obviously
right), float64."""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def conv2d(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    Og = O // groups
    for o in range(O):
        c0 = (o // Og) * Cg
        for c in range(Cg):
            for i in range(kh):
                for j in range(kw):  # tap (i, j) of every output position at once: a strided slice of xp
                    y[:, o] += w[o, c, i, j] * _tap(xp[:, c0 + c], i * dh, j * dw, Ho, Wo, sh, sw)
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def _tap(plane, top, left, Ho, Wo, sh, sw):
    """plane[:, top + oh·sh, left + ow·sw] for every output position (oh, ow)."""
    return plane[:, top:top + sh * (Ho - 1) + 1:sh, left:left + sw * (Wo - 1) + 1:sw]


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) of conv2d."""
    (sh, sw), (ph, pw), (dh, dw_) = _pair(stride), _pair(padding), _pair(dilation)
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho, Wo = dy.shape[2:]
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    dxp = np.zeros_like(xp)
    dwt = np.zeros_like(w)
    Og = O // groups
    for o in range(O):
        c0 = (o // Og) * Cg
        for c in range(Cg):
            for i in range(kh):
                for j in range(kw):
                    _tap(dxp[:, c0 + c], i * dh, j * dw_, Ho, Wo, sh, sw)[...] += dy[:, o] * w[o, c, i, j]
                    dwt[o, c, i, j] += np.sum(dy[:, o] * _tap(xp[:, c0 + c], i * dh, j * dw_, Ho, Wo, sh, sw))
    return dxp[:, :, ph:ph + H, pw:pw + W], dwt, dy.sum(axis=(0, 2, 3))


def pool_output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """PyTorch's rule: (size + 2p - d(k-1) - 1) / s + 1 rounded down, or up in ceil mode, where a last window
    that would start in the right padding is dropped."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 0)


def pool2d(x, kind, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
           divisor_override=None):
    """Max or average pooling with PyTorch's options; returns (y, dx_fn) where dx_fn(dy) is the input gradient.
    For max pooling dx_fn.indices holds PyTorch's indices (flat h·W + w in the input plane)."""
    x = np.asarray(x, np.float64)
    stride = kernel_size if stride is None else stride
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x.shape
    Ho, Wo = pool_output_size(H, kh, sh, ph, dh, ceil_mode), pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    y = np.zeros((N, C, Ho, Wo))
    indices = np.zeros((N, C, Ho, Wo), np.int64)
    picks = []
    for oh in range(Ho):
        for ow in range(Wo):
            h_start, w_start = oh * sh - ph, ow * sw - pw
            taps = [(h_start + i * dh, w_start + j * dw) for i in range(kh) for j in range(kw)]
            cells = [(h, v) for h, v in taps if 0 <= h < H and 0 <= v < W]
            for n in range(N):
                for c in range(C):
                    vals = [x[n, c, h, v] for h, v in cells]
                    if kind == "max" and not cells:
                        # Every tap in the padding: -inf, no gradient; PyTorch's index is the first tap at or
                        # after the input's start along each axis.
                        first_h = min(h for h, _ in taps if h >= 0)
                        first_w = min(v for _, v in taps if v >= 0)
                        y[n, c, oh, ow], indices[n, c, oh, ow] = -np.inf, first_h * W + first_w
                    elif kind == "max":
                        best = int(np.argmax(vals))  # the first maximum, or the first NaN
                        y[n, c, oh, ow] = vals[best]
                        indices[n, c, oh, ow] = cells[best][0] * W + cells[best][1]
                        picks.append((n, c, oh, ow, [cells[best]], 1.0))
                    else:
                        if divisor_override is not None:
                            divisor = divisor_override
                        elif count_include_pad:  # the window clipped to the padded input
                            divisor = ((min(h_start + kh, H + ph) - h_start) *
                                       (min(w_start + kw, W + pw) - w_start))
                        else:
                            divisor = len(cells)
                        y[n, c, oh, ow] = sum(vals) / divisor
                        picks.append((n, c, oh, ow, cells, 1.0 / divisor))

    def backward(dy):
        dx = np.zeros_like(x)
        for n, c, oh, ow, cells, scale in picks:
            for h, v in cells:
                dx[n, c, h, v] += dy[n, c, oh, ow] * scale
        return dx

    backward.indices = indices
    return y, backward


def adaptive_avg_pool2d(x, output_size):
    x = np.asarray(x, np.float64)
    Ho, Wo = _pair(output_size)
    N, C, H, W = x.shape
    y = np.zeros((N, C, Ho, Wo))
    spans = []
    for oh in range(Ho):
        h0, h1 = oh * H // Ho, -(-(oh + 1) * H // Ho)
        for ow in range(Wo):
            w0, w1 = ow * W // Wo, -(-(ow + 1) * W // Wo)
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
            spans.append((oh, ow, h0, h1, w0, w1))

    def backward(dy):
        dx = np.zeros_like(x)
        for oh, ow, h0, h1, w0, w1 in spans:
            dx[:, :, h0:h1, w0:w1] += dy[:, :, oh, ow][:, :, None, None] / ((h1 - h0) * (w1 - w0))
        return dx

    return y, backward
