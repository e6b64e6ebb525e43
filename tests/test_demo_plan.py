"""`make demo`'s plan: what is trained, what is cached, an estimate from measured times."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import demo  # noqa: E402


def test_plan_names_every_model_and_uses_measured_times(tmp_path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "resnet_tiny_s0.pt").write_bytes(b"weights")
    (ckpts / "manifest.json").write_text(json.dumps({"checkpoints": {"resnet_tiny_s0": {
        "model": "resnet_tiny", "train_seconds": 80.0, "recipe": {"epochs": 8}}}}))
    ref = tmp_path / "summary.json"
    per = {a: {"seconds": 6.0, "reused": False} for a in demo.ANALYSES}
    ref.write_text(json.dumps({
        "models": [{"label": "r", "arch": "resnet_tiny"}, {"label": "v", "arch": "vit_tiny"},
                   {"label": "a", "arch": "alternet_tiny"}],
        "timing": {"per_model": {"r": per, "v": per, "a": per}}}))
    # resnet_tiny_s0's analyses are cached in OUT (its timings.json, keyed by its sha prefix)
    from landscape.store.provenance import file_sha256
    sha = file_sha256(ckpts / "resnet_tiny_s0.pt")[:10]
    raw = tmp_path / "out" / "raw" / f"resnet_tiny_s0-{sha}"
    raw.mkdir(parents=True)
    (raw / "timings.json").write_text(json.dumps({a: 1.0 for a in demo.ANALYSES}))
    text, seconds = demo.plan(ckpts, tmp_path / "out", "quick", reference=ref)
    assert "train 14 of 15 demo checkpoints" in text
    assert "model 1 of 15: resnet_tiny_s0     cached" in text
    assert "model 7 of 15: vit_tiny_s1" in text and "model 15 of 15: alternet_tiny_s4" in text
    assert "measured by the reference run" in text
    # written out, not recomputed from demo's tables: 4 resnet runs of 8 epochs at the
    # manifest's 10 s an epoch (320 s); 5 vit runs of 30 epochs and 5 alternet runs of 12 at
    # the 25 s fallback (3750 + 1500 s); then 14 uncached models x 7 analyses x 6 s (588 s)
    assert seconds == 320.0 + 3750.0 + 1500.0 + 588.0
