"""fastnn.sklearn in a scikit-learn grid search
=============================================

fastnn inside scikit-learn: StandardScaler + fastnn.sklearn.MLPClassifier in a Pipeline, tuned by
GridSearchCV with two worker processes on the handwritten digits, next to scikit-learn's own MLPClassifier
on the same grid. Prints the best parameters, the cross-validated and held-out accuracy and the time of each.
The worker processes are started (and have imported both libraries) before either search is timed.

Run: python examples/sklearn_pipeline.py          (pip install "fastnn[sklearn]")
"""
import os
import time
import warnings

from joblib import Parallel, delayed
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastnn.sklearn import MLPClassifier

# The same grid for both: the parameters have the same names (fastnn's max_epochs is scikit-learn's max_iter).
GRID = {"mlpclassifier__hidden_layer_sizes": [(64,), (128,), (128, 64)], "mlpclassifier__alpha": [1e-4, 1e-2]}

# The documentation build sets FASTNN_DOCS_QUICK=1: 10 epochs instead of 100, and two candidates.
QUICK = os.environ.get("FASTNN_DOCS_QUICK") == "1"
EPOCHS = 10 if QUICK else 100
if QUICK:
    GRID = {"mlpclassifier__hidden_layer_sizes": [(64,)], "mlpclassifier__alpha": [1e-4, 1e-2]}


def _import_both():
    import fastnn.sklearn  # noqa: F401
    import sklearn.neural_network  # noqa: F401


def search(classifier, X_train, y_train):
    grid = GridSearchCV(make_pipeline(StandardScaler(), classifier), GRID, cv=3, n_jobs=2)
    start = time.perf_counter()
    grid.fit(X_train, y_train)
    return grid, time.perf_counter() - start


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    candidates = {
        "fastnn": MLPClassifier(max_epochs=EPOCHS, random_state=0),
        "scikit-learn": SklearnMLP(max_iter=EPOCHS, random_state=0),
    }
    Parallel(n_jobs=2)(delayed(_import_both)() for _ in range(4))  # start the workers: not part of either time
    times = {}
    for name, classifier in candidates.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's, when max_iter is reached
            grid, seconds = search(classifier, X_train, y_train)
        times[name] = seconds
        best = {k.split("__", 1)[1]: v for k, v in grid.best_params_.items()}
        print(f"{name:<13} best {best}: cross-validated accuracy {grid.best_score_:.4f}, "
              f"held-out accuracy {grid.score(X_test, y_test):.4f}, grid search {seconds:.1f} s "
              f"({len(grid.cv_results_['params'])} candidates x 3 folds + refit, 2 processes)")
    print(f"fastnn's time / scikit-learn's: {times['fastnn'] / times['scikit-learn']:.2f}")


if __name__ == "__main__":
    main()
