"""Confusion matrix on the digits
==============================

Which digits does an MLP confuse? Train on 80% of scikit-learn's digits, predict the held-out 20% with
:meth:`fastnn.Trainer.predict`, and count (true class, predicted class) pairs.

    python examples/plot_confusion_matrix.py
"""
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn

EPOCHS = 5 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 40   # the docs build runs a quick version

fnn.manual_seed(0)
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
scaler = fnn.data.StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

model = fnn.nn.Sequential(fnn.nn.Linear(64, 64), fnn.nn.ReLU(), fnn.nn.Linear(64, 10))
trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(), optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3),
                      metrics=["accuracy"])
trainer.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)

logits = trainer.predict(X_test)               # (360, 10) class scores
predicted = logits.argmax(axis=1)
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (y_test, predicted), 1)   # rows: true class, columns: predicted class
print(f"test accuracy {np.trace(confusion) / confusion.sum():.4f}")
print(confusion)

# %%
# The diagonal holds the correct predictions; everything off it is a mistake.
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(confusion, cmap="Blues")
for i in range(10):
    for j in range(10):
        ax.text(j, i, confusion[i, j], ha="center", va="center",
                color="white" if confusion[i, j] > confusion.max() / 2 else "black", fontsize=8)
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted digit")
ax.set_ylabel("true digit")
ax.set_title("digits MLP, held-out images")
plt.show()
