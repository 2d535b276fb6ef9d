"""L-BFGS for full-batch training, with PyTorch's closure interface (torch.optim.LBFGS).

    opt = fastnn.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad()
        value = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        return value
    opt.step(closure)

Every trainable parameter is flattened into one float64 vector per call; the search direction comes from
the two-loop recursion over the last `history_size` curvature pairs (s, y), and the step length from a
strong-Wolfe line search (cubic interpolation, bracketing and zoom; Nocedal & Wright, Algorithms 3.5-3.6)
or, with line_search_fn=None, a fixed step lr. The objective is evaluated in the parameters' own dtype:
call model.double() first when the last digits matter.
"""
import math

import numpy as np

from .optimizer import Optimizer

__all__ = ["LBFGS"]


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clamped to bounds (default:
    the interval between x1 and x2); the midpoint when the cubic has no real minimiser."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    if x1 == x2:
        return (lo + hi) / 2.0
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc >= 0 and math.isfinite(disc):
        d2 = math.sqrt(disc)
        if x1 <= x2:
            denom = g2 - g1 + 2.0 * d2
            t = x2 - (x2 - x1) * ((g2 + d2 - d1) / denom) if denom != 0 else (lo + hi) / 2.0
        else:
            denom = g1 - g2 + 2.0 * d2
            t = x1 - (x1 - x2) * ((g1 + d2 - d1) / denom) if denom != 0 else (lo + hi) / 2.0
        if math.isfinite(t):
            return min(max(t, lo), hi)
    return (lo + hi) / 2.0


def _strong_wolfe(phi, t, f, g, gtd, d, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Line search along d from the current point (loss f, gradient g, directional derivative gtd < 0) for a
    step t satisfying the strong Wolfe conditions f(t) <= f + c1·t·gtd and |f'(t)| <= c2·|gtd|.
    phi(t) -> (loss, flat gradient) at x + t·d. Returns (loss, gradient, t, evaluations)."""
    d_norm = float(np.max(np.abs(d)))
    f_new, g_new = phi(t)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = None
    # Bracketing phase: grow the step until an interval is known to contain an acceptable point.
    while ls_iter < max_ls:
        if not math.isfinite(f_new) or f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            return f_new, g_new, t, evals
        if gtd_new >= 0:
            bracket = [t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]
            break
        lo, hi = t + 0.01 * (t - t_prev), t * 10.0
        t_next = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(lo, hi))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = phi(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if bracket is None:  # out of evaluations while still descending: best of the start and the last point
        if f_new < f:
            return f_new, g_new, t, evals
        return f, g, 0.0, evals
    ts, fs, gs, gtds = bracket
    # Zoom phase: shrink the bracket, keeping ts[low] the best point satisfying sufficient decrease.
    insufficient = False
    low, high = (0, 1) if fs[0] <= fs[1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(ts[1] - ts[0]) * d_norm < tolerance_change:
            break
        if math.isfinite(fs[0]) and math.isfinite(fs[1]):
            t = _cubic_minimum(ts[0], fs[0], gtds[0], ts[1], fs[1], gtds[1])
        else:
            t = (ts[0] + ts[1]) / 2.0
        # Keep away from the ends of the bracket so that it keeps shrinking.
        tmax, tmin = max(ts), min(ts)
        eps = 0.1 * (tmax - tmin)
        if min(tmax - t, t - tmin) < eps:
            if insufficient or t >= tmax or t <= tmin:
                t = tmax - eps if abs(t - tmax) < abs(t - tmin) else tmin + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = phi(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if not math.isfinite(f_new) or f_new > f + c1 * t * gtd or f_new >= fs[low]:
            ts[high], fs[high], gs[high], gtds[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if fs[0] <= fs[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (ts[high] - ts[low]) >= 0:
                ts[high], fs[high], gs[high], gtds[high] = ts[low], fs[low], gs[low], gtds[low]
            ts[low], fs[low], gs[low], gtds[low] = t, f_new, g_new, gtd_new
    if not math.isfinite(fs[low]) or fs[low] > f:  # never accept a worse point than the start
        return f, g, 0.0, evals
    return fs[low], gs[low], ts[low], evals


class LBFGS(Optimizer):
    """L-BFGS (torch.optim.LBFGS): limited-memory BFGS for full-batch problems.

    ``step(closure)`` runs up to ``max_iter`` iterations and returns the loss of the first closure call;
    ``closure()`` must zero the gradients, compute the loss, run backward and return the loss. The first
    iteration scales ``lr`` by ``min(1, 1/‖g‖₁)``. One parameter group only, as in PyTorch; frozen parameters
    are left alone.

    Parameters
    ----------
    params : iterable of Parameter
        ``model.parameters()``.
    lr : float, default 1
        The step length tried first (with a line search) or taken (without one).
    max_iter : int, default 20
        Iterations per ``step``.
    max_eval : int or None, default None
        Closure calls per ``step``; ``None`` means ``max_iter * 5 // 4``.
    tolerance_grad : float, default 1e-7
        Stop when the largest gradient entry is at most this.
    tolerance_change : float, default 1e-9
        Stop when the step or the change in loss is below this.
    history_size : int, default 100
        Curvature pairs kept.
    line_search_fn : None or "strong_wolfe", default None
        The line search.

    Raises
    ------
    ValueError
        For parameter groups, or invalid options.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Linear(3, 1)
    >>> x = np.ones((4, 3), np.float32); y = np.full((4, 1), 2.0, np.float32)
    >>> loss_fn = fnn.nn.MSELoss()
    >>> opt = fnn.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = loss_fn(model(x), y)
    ...     model.backward_parameters(loss_fn.backward())
    ...     return loss
    >>> _ = opt.step(closure)
    >>> float(loss_fn(model(x), y)) < 1e-6
    True
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._lbfgs = {"func_evals": 0, "n_iter": 0}

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def _validate(self, g):
        self._check(g["lr"] > 0, f"Invalid learning rate: {g['lr']}")
        self._check(int(g["max_iter"]) >= 1, f"Invalid max_iter: {g['max_iter']}")
        self._check(g["max_eval"] is not None and int(g["max_eval"]) >= 1, f"Invalid max_eval: {g['max_eval']}")
        self._check(int(g["history_size"]) >= 1, f"Invalid history_size: {g['history_size']}")
        self._check(g["tolerance_grad"] >= 0 and g["tolerance_change"] >= 0, "tolerances must be >= 0")
        self._check(g["line_search_fn"] in (None, "strong_wolfe"),
                    f"only 'strong_wolfe' is supported as line_search_fn, got {g['line_search_fn']!r}")

    # -- flat views of the parameters ------------------------------------------------------------------
    def _params(self):
        return [p for p in self.param_groups[0]["params"] if p.requires_grad]

    def _gather_flat(self, attr):
        params = self._params()
        if not params:
            return np.zeros(0)
        return np.concatenate([np.asarray(getattr(p, attr), dtype=np.float64).reshape(-1) for p in params])

    def _set_flat(self, x):
        offset = 0
        for p in self._params():
            n = p.data.size
            p.data[...] = x[offset:offset + n].reshape(p.data.shape)  # in place: layers keep their buffers
            offset += n

    def _evaluate(self, closure):
        value = closure()
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"LBFGS: the closure must return the loss as a number, got "
                            f"{type(value).__name__}") from None
        return value, self._gather_flat("grad")

    # -- step ------------------------------------------------------------------------------------------
    def step(self, closure=None):
        """Runs the iterations and returns the loss the first closure call reported."""
        if closure is None or not callable(closure):
            raise TypeError("LBFGS.step needs a closure: a function that zeroes the gradients, computes the "
                            "loss, runs backward and returns the loss (L-BFGS re-evaluates the objective "
                            "during its line search, so the Trainer's plain step() cannot drive it)")
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = int(group["max_iter"]), int(group["max_eval"])
        tol_grad, tol_change = float(group["tolerance_grad"]), float(group["tolerance_change"])
        history_size = int(group["history_size"])
        line_search = group["line_search_fn"]
        st = self._lbfgs

        loss, flat_grad = self._evaluate(closure)
        orig_loss = loss
        evals = 1
        st["func_evals"] += 1
        if flat_grad.size == 0 or np.max(np.abs(flat_grad)) <= tol_grad:
            return orig_loss

        d, t = st.get("d"), st.get("t")
        old_dirs, old_stps, ro = st.get("old_dirs", []), st.get("old_stps", []), st.get("ro", [])
        h_diag = st.get("H_diag", 1.0)
        prev_flat_grad, prev_loss = st.get("prev_flat_grad"), st.get("prev_loss")
        if d is not None and d.shape != flat_grad.shape:  # the set of trainable parameters changed
            raise ValueError(f"LBFGS: the trainable parameters now have {flat_grad.size} entries, the saved "
                             f"state has {d.size}; make a new optimizer after freezing or unfreezing")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:  # keep the pair only when the curvature condition holds
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                # Two-loop recursion: d = -H·g with H the L-BFGS inverse-Hessian approximation.
                q = -flat_grad
                alpha = [0.0] * len(old_dirs)
                for i in range(len(old_dirs) - 1, -1, -1):
                    alpha[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - alpha[i] * old_dirs[i]
                r = q * h_diag
                for i in range(len(old_dirs)):
                    beta = float(old_dirs[i] @ r) * ro[i]
                    r = r + (alpha[i] - beta) * old_stps[i]
                d = r
            prev_flat_grad, prev_loss = flat_grad.copy(), loss

            t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * lr if st["n_iter"] == 1 else lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:  # not a descent direction (or a negligible one)
                break

            if line_search == "strong_wolfe":
                x0 = self._gather_flat("data")

                def phi(step):
                    self._set_flat(x0 + step * d)
                    return self._evaluate(closure)

                loss, flat_grad, t, ls_evals = _strong_wolfe(phi, t, loss, flat_grad, gtd, d,
                                                             tolerance_change=tol_change)
                self._set_flat(x0 + t * d)
                if t == 0.0:  # the line search found nothing better
                    evals += ls_evals
                    st["func_evals"] += ls_evals
                    break
            else:
                self._set_flat(self._gather_flat("data") + t * d)
                ls_evals = 0
                if n_iter != max_iter:
                    loss, flat_grad = self._evaluate(closure)
                    ls_evals = 1
            evals += ls_evals
            st["func_evals"] += ls_evals

            if n_iter == max_iter or evals >= max_eval:
                break
            if np.max(np.abs(flat_grad)) <= tol_grad:
                break
            if np.max(np.abs(d * t)) <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        st.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                  prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    def zero_grad(self):
        for p in self.param_groups[0]["params"]:
            p.zero_grad()

    # -- state -----------------------------------------------------------------------------------------
    def state_dict(self):
        """{"state": {0: {...}} (empty before the first step), "param_groups": [...]}: counters, the last
        direction and step, and the curvature pairs as 2-D arrays (one row per pair). Copies only."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.param_groups[0]["params"])))
        st = self._lbfgs
        state = {}
        if st.get("d") is not None:
            n = st["d"].size
            stack = (lambda rows: np.array(rows, dtype=np.float64).reshape(len(rows), n))
            state[0] = {"func_evals": int(st["func_evals"]), "n_iter": int(st["n_iter"]), "d": st["d"].copy(),
                        "t": float(st["t"]), "old_dirs": stack(st["old_dirs"]), "old_stps": stack(st["old_stps"]),
                        "ro": np.array(st["ro"], dtype=np.float64), "H_diag": float(st["H_diag"]),
                        "prev_flat_grad": st["prev_flat_grad"].copy(), "prev_loss": float(st["prev_loss"])}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.param_groups[0]["params"]):
            raise ValueError("LBFGS.load_state_dict: the saved optimizer has a different parameter list")
        options = {k: v for k, v in groups[0].items() if k != "params"}
        self._validate({**self.param_groups[0], **options})
        saved = state_dict["state"]
        st = {"func_evals": 0, "n_iter": 0}
        if saved:
            s = saved.get(0, saved.get("0"))
            n = self._gather_flat("data").size
            d = np.array(s["d"], dtype=np.float64).reshape(-1)
            if d.size != n:
                raise ValueError(f"LBFGS.load_state_dict: saved state is for {d.size} parameter entries, the "
                                 f"optimizer has {n}")
            rows = (lambda a: [r.copy() for r in np.array(a, dtype=np.float64).reshape(-1, n)])
            st.update(func_evals=int(s["func_evals"]), n_iter=int(s["n_iter"]), d=d, t=float(s["t"]),
                      old_dirs=rows(s["old_dirs"]), old_stps=rows(s["old_stps"]),
                      ro=[float(v) for v in np.asarray(s["ro"]).reshape(-1)], H_diag=float(s["H_diag"]),
                      prev_flat_grad=np.array(s["prev_flat_grad"], dtype=np.float64).reshape(-1),
                      prev_loss=float(s["prev_loss"]))
        self.param_groups[0].update(options)
        self._lbfgs = st
