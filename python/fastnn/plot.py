"""Plots of training history and learning-rate schedules. Needs matplotlib, the optional extra:

    pip install fastnn[plot]

    import fastnn.plot
    history = trainer.fit(x, y, epochs=20, validation_data=(xv, yv))
    fastnn.plot.history(history, path="history.png")        # loss and accuracy, train and val_ together
    fastnn.plot.schedule(fastnn.schedules.CosineDecay(0.1, decay_steps=1000), steps=1000, path="lr.png")

`import fastnn` does not import this module or matplotlib; matplotlib is imported when a function here is
first called. With `path=` (and no `ax=`) the figure is drawn on a plain Agg canvas, without pyplot: nothing
opens a window or touches pyplot's global state, so it works on headless machines and in tests. Without
`path=` the figure comes from pyplot, so `plt.show()` or a notebook displays it.
"""
import math
import numbers
import os

__all__ = ["history", "schedule"]

_INSTALL_HINT = ("fastnn.plot needs matplotlib, which is an optional dependency: "
                 "pip install fastnn[plot]  (or: pip install matplotlib)")


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return matplotlib


def _new_figure(n_axes, path, figsize):
    """A figure with n_axes side by side: Agg canvas (no pyplot) when saving, pyplot otherwise."""
    _matplotlib()
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, n_axes, squeeze=False)[0]
    else:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, n_axes, figsize=figsize, squeeze=False, layout="constrained")
        axes = axes[0]
    return fig, list(axes)


def _axes_from(ax, n):
    if hasattr(ax, "flat"):  # numpy array of Axes, as plt.subplots returns
        axes = list(ax.flat)
    elif isinstance(ax, (list, tuple)):
        axes = list(ax)
    else:
        axes = [ax]
    if len(axes) != n:
        raise ValueError(f"fastnn.plot.history: {n} metric(s) to draw but {len(axes)} axes given; pass one "
                         f"Axes per metric (or metrics=[...] to choose)")
    return axes


def _save(fig, path):
    path = os.fspath(path)
    if fig.canvas is None or type(fig.canvas).__name__ == "FigureCanvasBase":
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def _default_metrics(hist):
    names = []
    for key in hist:
        base = key[4:] if key.startswith("val_") else key
        if base in ("lr", "epoch") or base in names:
            continue
        names.append(base)
    if "loss" in names:  # loss first, then the metrics in history order
        names.remove("loss")
        names.insert(0, "loss")
    return names


def history(history, metrics=None, ax=None, path=None, title=None):
    """Draw training curves from a Trainer history (needs matplotlib).

    One panel per metric (default: ``"loss"`` then every other key of the history except ``"lr"``); each has
    the training curve and, when present, the validation curve (``"val_"`` + metric), against the epoch
    (1-based).

    Parameters
    ----------
    history : dict or Trainer
        ``Trainer.fit``'s return value, or a Trainer (its ``history`` is used).
    metrics : str or list of str, optional
        Names to draw, e.g. ``["loss", "accuracy"]`` or ``["lr"]``.
    ax : Axes or sequence of Axes, optional
        Where to draw (one per metric); default a new figure.
    path : str, optional
        Save the figure there (PNG, PDF, SVG... by extension).
    title : str, optional
        Title of the figure (or of the one panel).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    TypeError
        If ``history`` is not a dict or Trainer.
    ValueError
        For an empty history or a metric it does not have.

    See Also
    --------
    schedule

    Examples
    --------
    >>> import fastnn.plot
    >>> fig = fastnn.plot.history({"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6]})
    >>> [ax.get_title() for ax in fig.axes]
    ['loss']
    """
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict):
        raise TypeError(f"fastnn.plot.history: expected a history dict (Trainer.fit's return value), got "
                        f"{type(history).__name__}")
    if metrics is None:
        names = _default_metrics(hist)
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValueError("fastnn.plot.history: the history has nothing to plot (it is empty)")
    for name in names:
        if name not in hist and "val_" + name not in hist:
            raise ValueError(f"fastnn.plot.history: {name!r} is not in the history; keys: {sorted(hist)}")

    if ax is None:
        fig, axes = _new_figure(len(names), path, figsize=(4.5 * len(names), 3.4))
    else:
        _matplotlib()
        axes = _axes_from(ax, len(names))
        fig = axes[0].figure
    for a, name in zip(axes, names):
        for key, style in ((name, "-"), ("val_" + name, "--")):
            values = hist.get(key)
            if values is None or len(values) == 0:
                continue
            epochs = list(range(1, len(values) + 1))
            a.plot(epochs, [float(v) for v in values], style, marker="o" if len(values) <= 30 else None,
                   markersize=3, label=key)
        a.set_xlabel("epoch")
        a.set_ylabel(name)
        a.set_title(name if title is None or len(names) > 1 else title)
        if name == "lr" and all(float(v) > 0 for v in hist.get(name, [])):
            a.set_yscale("log")
        a.grid(True, alpha=0.3)
        a.legend()
        a.xaxis.get_major_locator().set_params(integer=True)
    if title is not None and len(names) > 1:
        fig.suptitle(title)
    if path is not None:
        _save(fig, path)
    return fig


def schedule(schedule, steps, ax=None, path=None, title=None, log=False):
    """Draw a learning-rate schedule over a range of steps (needs matplotlib).

    Parameters
    ----------
    schedule : callable
        ``step -> lr``, e.g. from :mod:`fastnn.schedules`.
    steps : int or iterable of int
        ``n`` for steps ``0 .. n-1``, or the steps to draw.
    ax : Axes, optional
        Where to draw; default a new figure.
    path : str, optional
        Save the figure there.
    title : str, optional
        The title.
    log : bool, default False
        A logarithmic lr axis.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    TypeError
        If ``schedule`` is not callable.
    ValueError
        For no steps, or a non-finite rate.

    See Also
    --------
    history

    Examples
    --------
    >>> import fastnn as fnn, fastnn.plot
    >>> fig = fastnn.plot.schedule(fnn.schedules.CosineDecay(0.1, decay_steps=100), steps=100)
    >>> len(fig.axes[0].lines[0].get_xdata())
    100
    """
    if not callable(schedule):
        raise TypeError(f"fastnn.plot.schedule: schedule must be a callable step -> lr, got "
                        f"{type(schedule).__name__}")
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        if steps < 1:
            raise ValueError(f"fastnn.plot.schedule: steps must be >= 1, got {steps}")
        xs = list(range(int(steps)))
    else:
        xs = list(steps)
        if not xs:
            raise ValueError("fastnn.plot.schedule: no steps to draw")
    lrs = [float(schedule(s)) for s in xs]
    bad = [s for s, lr in zip(xs, lrs) if not math.isfinite(lr)]
    if bad:
        raise ValueError(f"fastnn.plot.schedule: the schedule returned a non-finite lr at step {bad[0]}")
    if ax is None:
        fig, (a,) = _new_figure(1, path, figsize=(5.5, 3.4))
    else:
        _matplotlib()
        a, fig = ax, ax.figure
    a.plot(xs, lrs, "-", label=type(schedule).__name__)
    a.set_xlabel("step")
    a.set_ylabel("learning rate")
    a.set_title(title if title is not None else (repr(schedule) if len(repr(schedule)) <= 70
                                                  else type(schedule).__name__), fontsize=9)
    if log:
        a.set_yscale("log")
    a.grid(True, alpha=0.3)
    if path is not None:
        _save(fig, path)
    return fig
