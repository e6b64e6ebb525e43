"""Two ranks under torchrun (gloo, CPU) write the same surface file as one process (chunks of
two points through the vmap path, so the chunk partition is exercised too)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
from cases import free_port

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
    torch.set_num_threads(1)
    from landscape import surface as S, distributed
    from landscape.surface import directions as D
    distributed.init_from_env()
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1); self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(64, 3)
        def forward(self, x):
            return self.fc(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1))
    torch.manual_seed(0)
    m = Net().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    dirs = [D.random_direction(m, 1), D.random_direction(m, 2)]
    r = S.compute_surface(m, dirs, x, y, np.linspace(-1, 1, 5), np.linspace(-1, 1, 4), sys.argv[1],
                          batch_size=16, points_per_pass=int(sys.argv[2]), channels_last=False,
                          wd=1e-3, progress=False, identity={"checkpoint_sha256": "x"})
    assert (r is None) == (distributed.rank() != 0)
""")


def test_two_rank_torchrun_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    subprocess.run([sys.executable, str(script), str(one), "2"], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", str(free_port()), str(script), str(two), "2"],
                   check=True, env=env, timeout=120)
    with h5py.File(one) as a, h5py.File(two) as b:
        assert sorted(a) == sorted(b)
        for k in a:
            assert np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True), k
        assert np.asarray(a["test_done"]).all()
        assert a.attrs["identity"] == b.attrs["identity"]
