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


# -- gated-feedback RNN (Chung et al. 2015) ------------------------------------------------------------------
def _gf_sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def gated_feedback_forward(params, x, h0):
    """params: per layer (w, b, u, wg, ug, bg) as GatedFeedbackRNN's; x [T, N, I], h0 [L, N, H].
    Returns (out [T, N, H], h_n [L, N, H], cache). One step and one layer at a time, plain NumPy matmuls."""
    T, N = x.shape[:2]
    L, H = h0.shape[0], h0.shape[2]
    h = h0.copy()
    out = np.empty((T, N, H), h.dtype)
    steps = []
    for t in range(T):
        hstar = h.transpose(1, 0, 2).reshape(N, L * H)  # h*_{t−1}
        below = x[t]
        new_h, layers = np.empty_like(h), []
        for j, (w, b, u, wg, ug, bg) in enumerate(params):
            g = _gf_sigmoid(below @ wg.T + hstar @ ug.T + bg)  # [N, L]: gate from layer i into j
            rec = [h[i] @ u[:, i * H:(i + 1) * H].T for i in range(L)]
            a = below @ w.T + b + sum(g[:, i:i + 1] * rec[i] for i in range(L))
            new_h[j] = np.tanh(a)
            layers.append((below, g, rec))
            below = new_h[j]
        steps.append((h, hstar, layers, new_h))
        h = new_h
        out[t] = h[-1]
    return out, h, (x, steps)


def gated_feedback_backward(params, cache, g_out, dh_n):
    """BPTT of gated_feedback_forward: (dx, dh0, grads per layer in params' order)."""
    x, steps = cache
    T, N = x.shape[:2]
    L = len(params)
    H = params[0][0].shape[0]
    dtype = x.dtype
    dh = dh_n.copy()
    grads = [[np.zeros_like(p) for p in layer] for layer in params]
    dx = np.zeros_like(x)
    for t in range(T - 1, -1, -1):
        h_prev, hstar, layers, new_h = steps[t]
        dh[-1] += g_out[t]
        dh_prev = np.zeros_like(dh)
        dhstar = np.zeros((N, L * H), dtype)
        for j in range(L - 1, -1, -1):
            w, b, u, wg, ug, bg = params[j]
            dw, db, du, dwg, dug, dbg = grads[j]
            below, g, rec = layers[j]
            da = dh[j] * (1 - new_h[j] ** 2)
            dw += da.T @ below
            db += da.sum(0)
            dbelow = da @ w
            dg = np.empty((N, L), dtype)
            for i in range(L):
                ui = u[:, i * H:(i + 1) * H]
                gda = g[:, i:i + 1] * da
                du[:, i * H:(i + 1) * H] += gda.T @ h_prev[i]
                dh_prev[i] += gda @ ui
                dg[:, i] = np.einsum("nk,nk->n", da, rec[i])
            dga = dg * g * (1 - g)
            dwg += dga.T @ below
            dug += dga.T @ hstar
            dbg += dga.sum(0)
            dbelow += dga @ wg
            dhstar += dga @ ug
            if j > 0:
                dh[j - 1] += dbelow
            else:
                dx[t] = dbelow
        dh = dh_prev + dhstar.reshape(N, L, H).transpose(1, 0, 2)
    return dx, dh, grads
