"""Tests run against the installed fastnn, or against the working tree when tools/dev-build has linked a
freshly built extension into python/fastnn/ (developer loop: `tools/dev-build && pytest`), or against the
package folder named by FASTNN_TEST_PACKAGE_DIR."""
import glob
import os
import sys

# scikit-learn's estimator checks test array-API input only with this set (before scipy is imported);
# otherwise check_array_api_input skips itself.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

_tree = os.path.join(os.path.dirname(__file__), "..", "python")
if os.environ.get("FASTNN_TEST_PACKAGE_DIR"):  # another build's package folder (tools/sanitize)
    sys.path.insert(0, os.path.abspath(os.environ["FASTNN_TEST_PACKAGE_DIR"]))
elif glob.glob(os.path.join(_tree, "fastnn", "_core*.so")):
    sys.path.insert(0, os.path.abspath(_tree))
sys.path.insert(0, os.path.dirname(__file__))  # tests import harness.py and oracles
