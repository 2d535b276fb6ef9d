"""Progress reporting for Trainer.fit.

verbose=0: silent. verbose=2: one line per epoch. verbose=1: when stdout is a terminal, a tqdm bar updated
every batch that the epoch's line replaces when the epoch ends; otherwise (logs, CI, pytest capture) one line per epoch, so log files never
fill with carriage-return updates. The line looks like

    Epoch 3/10 - 0.4s - loss: 0.1234 - accuracy: 0.9700 - val_loss: 0.1500 - val_accuracy: 0.9600
"""
import os
import sys
import time

__all__ = ["ProgressLogger", "format_logs", "format_value"]

# Keys in epoch logs that are bookkeeping, not numbers to show.
_HIDDEN = ("lr",)


def format_value(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.4e}"
    return f"{v:.4f}"


def format_logs(logs):
    return " - ".join(f"{k}: {format_value(v)}" for k, v in logs.items() if k not in _HIDDEN)


def _is_tty(stream):
    try:
        return bool(stream.isatty())
    except Exception:  # closed or exotic streams
        return False


def _terminal_size(stream):
    try:
        return tuple(os.get_terminal_size(stream.fileno()))
    except (AttributeError, OSError, ValueError):
        return 0, 0


class ProgressLogger:
    """Prints training progress for one `fit` call. Methods are called by the Trainer."""

    def __init__(self, verbose, epochs, steps_per_epoch, stream=None):
        self.verbose = int(verbose)
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose}")
        self.epochs = int(epochs)
        self.steps = None if steps_per_epoch is None else int(steps_per_epoch)  # None: unknown (a stream)
        self.stream = sys.stdout if stream is None else stream
        self.use_bar = self.verbose == 1 and _is_tty(self.stream)
        self._bar = None
        self._t0 = None

    def epoch_begin(self, epoch):
        self._t0 = time.perf_counter()
        if self.use_bar:
            from tqdm import tqdm
            # A terminal that reports a 0x0 size (a fresh pty) makes tqdm draw nothing: use a fixed size.
            cols, rows = _terminal_size(self.stream)
            self._bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", file=self.stream,
                             unit="batch", leave=False, dynamic_ncols=cols > 0,
                             ncols=None if cols > 0 else 100, nrows=None if rows > 0 else 24)

    def batch_end(self, running_loss):
        bar = self._bar
        if bar is not None:
            bar.update(1)
            # tqdm redraws at most every mininterval; refresh=False keeps the per-batch cost tiny.
            bar.set_postfix_str(f"loss: {format_value(running_loss)}", refresh=False)

    def epoch_end(self, epoch, logs):
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        if self._bar is not None:  # the bar disappears and the epoch's summary line takes its place
            self._bar.close()
            self._bar = None
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s - {format_logs(logs)}",
                  file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
