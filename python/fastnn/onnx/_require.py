"""The optional `onnx` package, imported only when an ONNX function runs (never by `import fastnn`)."""

INSTALL_HINT = 'pip install "fastnn[onnx]"'


def require_onnx(what):
    """The `onnx` module, or ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"fastnn.onnx.{what} needs the onnx package, which is not installed: {INSTALL_HINT}") \
            from e
    return onnx
