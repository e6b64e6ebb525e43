"""The summary ``analyze`` returns is typed (issue 31, item 4): models as ModelSummary, every
section as typed entries, the same object the claims and the report read and that reading
``summary.json`` back gives; a block row's ``value`` is the number stored under its key."""
import json

import numpy as np
import pytest
from cases import fmnist_model

from landscape.analyze.config import make_config
from landscape.analyze.run import analyze
from landscape.loading import checkpoint
from landscape.summary import ModelSummary, Summary, read_summary
from landscape.summary_sections import ENTRY_TYPES, Block, BlocksEntry, LesionEntry

#: the feature analyses (the Hessian and the surface, which need the training images and take
#: most of the time, are read through the same path by the slow ``test_analyze.py`` run)
ONLY = ["fourier", "variance", "robustness", "cka", "lesion"]
SMALL = dict(samples=16, lesion_samples=16, eval_samples=16, batch_size=8, groups=4,
             robustness_freqs=3, cka_batch_size=8, device="cpu")
#: a two-stage resnet_tiny of a few thousand weights (the second unit of each stage keeps its
#: grid, so the Fourier and variance rows compare Conv blocks)
SMALL_NET = dict(num_blocks=(2, 2), widths=(4, 8), strides=(2, 2))


@pytest.fixture(scope="module")
def run(tmp_path_factory, fmnist_root):
    d = tmp_path_factory.mktemp("typed_summary")
    ck = checkpoint.save(d / "resnet_tiny.pt", fmnist_model("resnet_tiny", **SMALL_NET),
                         dataset="fashion-mnist", mean=[0.286], std=[0.353], seed=0, epoch=0)
    cfg = make_config("quick", overrides={**SMALL, "data_root": str(fmnist_root)})
    out = d / "out"
    return out, analyze([ck], out, cfg, only=ONLY, progress=False)


def test_analyze_returns_the_typed_summary_it_wrote(run):
    out, s = run
    assert isinstance(s, Summary) and s.labels() == ["resnet_tiny"]
    assert isinstance(s.models[0], ModelSummary) and s.models[0].family == "cnn"
    assert s.models[0].eval_samples == 16 and s.models[0].data_fraction == 1.0
    assert sorted(s.sections) == sorted(ONLY)
    for section in ONLY:
        (entry,) = s.entries(section).values()
        assert type(entry) is ENTRY_TYPES[section], section
    assert s.hessian == {} and s.surface == {}
    cka = s.cka["resnet_tiny"]
    assert cka.stages == (0, 0, 1, 1) and cka.matched_distance[0].distance == 1
    assert s.robustness["resnet_tiny"].protocol == "paper"
    assert len(s.robustness["resnet_tiny"].groups.acc) == 3
    assert {c["id"] for c in s.claims} >= {"variance-conv-cnn", "stage-cka-resnet_tiny"}
    # the mapping view still reads as the file's keys
    assert s["models"][0]["label"] == "resnet_tiny" and "fourier" in s
    # writing and reading round-trip to an equal object
    back = read_summary(out / "summary.json")
    assert back == s
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s.to_json()))


def test_block_value_is_the_measured_number(run):
    out, s = run
    on_disk = json.loads((out / "summary.json").read_text())
    from landscape.runners import FEATURE_RUNNERS
    from landscape.workflows.features import result_loader
    (raw,) = (out / "raw").iterdir()
    for section, key, measured in (
            ("fourier", "dlogA_hf", lambda r: r.high_frequency),
            ("variance", "variance", lambda r: r.variance),
            ("lesion", "acc", lambda r: r.accuracy)):
        entry = s.entries(section)["resnet_tiny"]
        assert isinstance(entry, BlocksEntry | LesionEntry)
        blocks = entry.blocks
        assert blocks and all(isinstance(b, Block) and b.measure == key for b in blocks)
        rows = on_disk[section]["resnet_tiny"]["blocks"]
        assert [b.value for b in blocks] == [r[key] for r in rows]
        assert all("value" not in r and "measure" not in r for r in rows)  # the format is kept
        res = result_loader(section)(raw / f"{section}.{FEATURE_RUNNERS[section][2]}")
        assert np.allclose([b.value for b in blocks], np.asarray(measured(res)))
