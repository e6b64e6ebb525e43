"""Shared test settings and fixtures: deterministic, headless plotting, every test isolated
from the user's product-mode cache; session fixtures for the shared tiny models and data of
``cases.py`` (test modules import ``cases``, never each other nor this file)."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import cases  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _private_mode_cache(tmp_path, monkeypatch):
    """Every test gets an empty product-mode cache, never the user's ~/.cache/landscape
    (subprocesses inherit the variable). A test may still set ``LANDSCAPE_CACHE`` itself."""
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "mode-cache"))


@pytest.fixture
def no_cpu_rule(monkeypatch):
    """No CPU rule for the product mode: "auto" measures, as on an accelerator."""
    from landscape.curvature import modes
    monkeypatch.setattr(modes, "RULES", {})


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory):
    """A session-wide fake Fashion-MNIST folder (``cases.write_fmnist``: 40 train, 16 test
    images); read it, never write into it."""
    root = tmp_path_factory.mktemp("fmnist") / "fashion-mnist"
    cases.write_fmnist(root, n_train=40, n_test=16)
    return root


# ---- Loud CI: a skip is a failure unless its reason is listed here (with why it is allowed). ----
# .ci/run sets LANDSCAPE_STRICT_SKIPS=1; a local `make test` only reports the skips.
ALLOWED_SKIPS: dict[str, str] = {
    # "reason substring": "why skipping is acceptable in CI",
}
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(
            report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if _skipped and os.environ.get("LANDSCAPE_STRICT_SKIPS") == "1":
        lines = "\n".join(f"  {node}: {why}" for node, why in _skipped)
        print(f"\nskips outside tests/conftest.py's ALLOWED_SKIPS fail CI:\n{lines}")
        session.exitstatus = 1
