"""`landscape train` killed with SIGKILL and run again gives the same model as an uninterrupted run.

Every run is a subprocess with the same thread count; the kill waits on the file's contents (the
epoch recorded in ``last.pt``), never on wall time.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from cases import needs_fashion_mnist

from landscape.loading import checkpoint

EPOCHS = 5


def _cmd(out):
    return [sys.executable, "-m", "landscape", "train", "--model", "resnet_tiny", "--data",
            "fashion-mnist", "--subset", "0.02", "--epochs", str(EPOCHS), "--batch-size", "32",
            "--test-samples", "64", "--seed", "0", "--out", str(out), "--quiet"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())


def _epoch(path):
    try:
        return int(checkpoint.read(path).get("epoch") or 0)
    except Exception:  # noqa: BLE001 - not written yet (the save is atomic, so never torn)
        return 0


@needs_fashion_mnist
def test_train_resumed_after_sigkill_equals_uninterrupted(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    give_up = time.monotonic() + 600  # a safety net only; the kill waits on the file
    while _epoch(killed / "last.pt") < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < give_up, "no epoch finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists()  # killed before the end
    assert _epoch(killed / "last.pt") < EPOCHS
    first = (killed / "epoch_001.pt").stat().st_mtime_ns
    subprocess.run(_cmd(killed), env=_env(), check=True, capture_output=True)
    # it resumed: the epochs finished before the kill were not trained (or written) again
    assert (killed / "epoch_001.pt").stat().st_mtime_ns == first
    full = tmp_path / "full"
    subprocess.run(_cmd(full), env=_env(), check=True, capture_output=True)
    a = checkpoint.read(killed / "model.pt")["state_dict"]
    b = checkpoint.read(full / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
