"""User-facing errors: the CLI prints ``landscape: error: <message>`` on one line and exits 2."""


class LandscapeError(ValueError):
    """Bad input from the user (missing file, wrong architecture, corrupt checkpoint, ...).
    A ValueError, so callers of the Python API may catch either."""


class NonFiniteLossError(LandscapeError, FloatingPointError):
    """The loss became NaN or infinite where a finite value is required."""
