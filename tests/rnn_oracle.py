"""NumPy oracle of the standard recurrent equations (PyTorch's gate order), forward and BPTT, one direction.

Deliberately plain: one time step at a time, float64, no shared code with fastnn. Gates: LSTM i, f, g, o;
GRU r, z, n with n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)), h = (1 − z)⊙n + z⊙h.
"""
import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def forward(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, reverse=False):
    """x [T, N, I] -> (y [T, N, H], h_n, c_n, cache)."""
    T = x.shape[0]
    H = w_hh.shape[1]
    h, c = h0.copy(), None if c0 is None else c0.copy()
    y = np.zeros((T, x.shape[1], H))
    cache = {}
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        xg = x[t] @ w_ih.T + b_ih
        hg = h @ w_hh.T + b_hh
        if mode in ("RNN_TANH", "RNN_RELU"):
            pre = xg + hg
            hn = np.tanh(pre) if mode == "RNN_TANH" else np.maximum(pre, 0)
            cache[t] = (h, pre)
        elif mode == "LSTM":
            i, f = sigmoid(xg[:, :H] + hg[:, :H]), sigmoid(xg[:, H:2 * H] + hg[:, H:2 * H])
            g, o = np.tanh(xg[:, 2 * H:3 * H] + hg[:, 2 * H:3 * H]), sigmoid(xg[:, 3 * H:] + hg[:, 3 * H:])
            cn = f * c + i * g
            hn = o * np.tanh(cn)
            cache[t] = (h, c, i, f, g, o, cn)
            c = cn
        else:  # GRU
            r, z = sigmoid(xg[:, :H] + hg[:, :H]), sigmoid(xg[:, H:2 * H] + hg[:, H:2 * H])
            n = np.tanh(xg[:, 2 * H:] + r * hg[:, 2 * H:])
            hn = (1 - z) * n + z * h
            cache[t] = (h, r, z, n, hg[:, 2 * H:])
        y[t] = hn
        h = hn
    return y, h, c, cache


def backward(mode, x, w_ih, w_hh, cache, dy, dh_n, dc_n=None, reverse=False):
    """Returns dict of dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh."""
    T = x.shape[0]
    H = w_hh.shape[1]
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(w_ih.shape[0]), np.zeros(w_hh.shape[0])
    dx = np.zeros_like(x)
    dh = dh_n.copy()
    dc = None if dc_n is None else dc_n.copy()
    order = range(T) if reverse else range(T - 1, -1, -1)
    for t in order:
        d = dh + dy[t]
        if mode in ("RNN_TANH", "RNN_RELU"):
            hp, pre = cache[t]
            dpre = d * (1 - np.tanh(pre) ** 2) if mode == "RNN_TANH" else d * (pre > 0)
            dxg = dhg = dpre
            dh_direct = 0
        elif mode == "LSTM":
            hp, cp, i, f, g, o, cn = cache[t]
            tc = np.tanh(cn)
            dcn = dc + d * o * (1 - tc ** 2)
            do = d * tc
            di, df, dg = dcn * g, dcn * cp, dcn * i
            dc = dcn * f
            dxg = dhg = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], 1)
            dh_direct = 0
        else:
            hp, r, z, n, hn_lin = cache[t]
            dn = d * (1 - z) * (1 - n ** 2)
            dz = d * (hp - n) * z * (1 - z)
            dr = dn * hn_lin * r * (1 - r)
            dxg = np.concatenate([dr, dz, dn], 1)
            dhg = np.concatenate([dr, dz, dn * r], 1)
            dh_direct = d * z
        dw_ih += dxg.T @ x[t]
        db_ih += dxg.sum(0)
        dw_hh += dhg.T @ hp
        db_hh += dhg.sum(0)
        dx[t] = dxg @ w_ih
        dh = dhg @ w_hh + dh_direct
    return dict(dx=dx, dh0=dh, dc0=dc, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)
