"""First-layer filters of a digits CNN
===================================

Train the small CNN of ``train_digits_cnn.py`` briefly and draw the 3×3 kernels of its first convolution,
``model[0].weight`` of shape (out_channels, in_channels, kH, kW) = (16, 1, 3, 3) — PyTorch's layout — next
to the feature maps they produce on one test image.

    python examples/plot_cnn_filters.py
"""
import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn

EPOCHS = 3 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 30   # the docs build runs a quick version
nn = fnn.nn

fnn.manual_seed(0)
X, y = load_digits(return_X_y=True)
X = (X / 16.0).reshape(-1, 1, 8, 8).astype("float32")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = nn.Sequential(nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),
                      nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
trainer = fnn.Trainer(model, loss=nn.CrossEntropyLoss(), optimizer=fnn.optim.Adam(model.parameters(), lr=2e-3),
                      metrics=["accuracy"])
trainer.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
print("test:", trainer.evaluate(X_test, y_test))

weights = model[0].weight.data          # (16, 1, 3, 3)
print("first-layer weight", weights.shape, weights.dtype)

# %%
# The 16 kernels (top two rows) and the ReLU maps they give on one test digit (bottom two rows, in the same
# order).
model.eval()
maps = nn.ReLU()(model[0](X_test[:1]))[0]   # (16, 8, 8)
fig, axes = plt.subplots(4, 8, figsize=(10, 5.6))
for k in range(16):
    row, col = divmod(k, 8)
    axes[row, col].imshow(weights[k, 0], cmap="RdBu_r")
    axes[row + 2, col].imshow(maps[k], cmap="gray")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel("kernels")
axes[2, 0].set_ylabel("maps")
fig.suptitle(f"first-layer filters of the digits CNN; the test digit is a {y_test[0]}")
fig.tight_layout()
plt.show()
