"""Training curves: loss and accuracy per epoch
=============================================

An MLP on scikit-learn's handwritten digits, trained by :class:`fastnn.Trainer` with 20% of the training
images held out for validation. ``Trainer.fit`` returns the history (one value per epoch for every metric,
``val_`` for the validation split), which :func:`fastnn.plot.history` draws.

    python examples/plot_training_curves.py
"""
import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn
import fastnn.plot

EPOCHS = 8 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 40   # the docs build runs a quick version

fnn.manual_seed(0)
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
scaler = fnn.data.StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

model = fnn.nn.Sequential(fnn.nn.Linear(64, 128), fnn.nn.ReLU(), fnn.nn.Dropout(0.2), fnn.nn.Linear(128, 10))
trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                      optimizer=fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), metrics=["accuracy"])
history = trainer.fit(X_train, y_train, epochs=EPOCHS, batch_size=64, validation_split=0.2, verbose=0)
print({key: [round(v, 4) for v in values[-3:]] for key, values in history.items()})
print("test:", trainer.evaluate(X_test, y_test))

# %%
# The curves: solid lines are the training split, dashed lines the validation split.
fastnn.plot.history(history, metrics=["loss", "accuracy"], title="digits MLP")
plt.show()
