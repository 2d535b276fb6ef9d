"""An LSTM's hidden states
=======================

A one-layer :class:`fastnn.nn.LSTM` learns to tell a slow sine wave from a fast one (noisy, random
phase). The model is a traced subclass: its ``forward`` uses the LSTM's last hidden state ``h[-1]``, and
no ``backward`` is written. After training we plot the hidden state over time for one sequence of each
class.

    python examples/plot_lstm_hidden_states.py
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import fastnn as fnn

EPOCHS = 6 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 30   # the docs build runs a quick version
T, N = 40, 600
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, size=N)
freq = np.where(labels == 1, 0.45, 0.15)[:, None]
t = np.arange(T)[None, :]
waves = np.sin(freq * t + rng.uniform(0, 2 * np.pi, size=(N, 1))) + 0.2 * rng.standard_normal((N, T))
X = waves[:, :, None].astype("float32")        # (N, T, 1): the LSTM below has batch_first=True


class Classifier(fnn.nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.lstm = fnn.nn.LSTM(1, hidden, batch_first=True)
        self.fc = fnn.nn.Linear(hidden, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.fc(h[-1])                    # backward comes from the trace


fnn.manual_seed(0)
model = Classifier()
trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=fnn.optim.Adam(model.parameters(), lr=1e-2),
                      metrics=["accuracy"])
history = trainer.fit(X, labels, epochs=EPOCHS, batch_size=32, validation_split=0.2,
                      verbose=0)
print("validation accuracy per epoch:", [round(a, 3) for a in history["val_accuracy"]])

# %%
# Hidden states over time, one panel per class: each line is one of the 16 hidden units.
model.eval()
fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for ax, cls in zip(axes, (0, 1)):
    i = int(np.flatnonzero(labels == cls)[0])
    out, (h, c) = model.lstm(X[i:i + 1])          # out: (1, T, 16), the hidden state at every step
    ax.plot(out[0], linewidth=0.8)
    ax.plot(waves[i], "k--", linewidth=1.2, label="input")
    ax.set_ylabel("hidden state")
    ax.set_title(f"{'slow' if cls == 0 else 'fast'} wave")
    ax.legend(loc="upper right")
axes[-1].set_xlabel("time step")
fig.tight_layout()
plt.show()
