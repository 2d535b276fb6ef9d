"""scikit-learn estimators trained by fastnn (needs scikit-learn >= 1.6: pip install "fastnn[sklearn]").

    from fastnn.sklearn import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor

MLPClassifier / MLPRegressor are drop-in replacements for scikit-learn's; NeuralNetClassifier /
NeuralNetRegressor make any fastnn model an estimator, from a factory module(n_features_in, n_outputs,
**module__kwargs). All four follow scikit-learn's contract: get_params / set_params (nested module__*,
optimizer__*, loss__*), clone, Pipeline, GridSearchCV (worker processes too), cross_val_score, pickle,
partial_fit, warm_start, sample_weight, pandas DataFrames (feature_names_in_), and pass scikit-learn's
estimator checks. The same random_state gives the same model bit for bit. fastnn.save(estimator, path) and
fastnn.load(path) store a fitted estimator as data (safetensors + JSON, no pickle).

`import fastnn` does not import this module (nor scikit-learn); import it explicitly.
"""
try:
    from sklearn.utils.validation import validate_data as _validate_data  # noqa: F401  (scikit-learn >= 1.6)
except ImportError as _e:  # pragma: no cover - depends on the installed scikit-learn
    raise ImportError(f"fastnn.sklearn needs scikit-learn >= 1.6 (pip install \"fastnn[sklearn]\"): {_e}") from _e

from .. import serialization as _serialization
from ._base import NeuralNetBase
from ._mlp import MLPClassifier, MLPRegressor
from ._net import NeuralNetClassifier, NeuralNetRegressor
from ._persist import estimator_from_file, estimator_to_file

__all__ = ["MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"]

_ESTIMATORS = {cls.__name__: cls for cls in (MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor)}

_serialization.register_object_format("sklearn.estimator", NeuralNetBase, estimator_to_file, estimator_from_file)
