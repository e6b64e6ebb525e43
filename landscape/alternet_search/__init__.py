"""The AlterNet build-up rule of "How Do Vision Transformers Work?" (Sec. 4.1) as a search.

The paper designs AlterNet by editing a baseline CNN step by step:

1. replace Conv blocks with MSA blocks *alternately* from the *end* of the network;
2. if an added MSA block does not improve predictive performance, revert it and replace a
   Conv block at the end of an *earlier* stage instead;
3. MSA blocks in late stages get more heads and a larger hidden dimension.

A model is described by a **pattern**: one string per stage, in forward order, of unit types
``"C"`` (conv unit) and ``"M"`` (MSA unit), e.g. ``("CC", "CC", "CM")``; ``pattern_str`` gives the
``"CC,CC,CM"`` form that ``models.create("alternet_tiny", pattern=...)`` accepts.

Candidate order and stopping rule (what :func:`run_search` does, exactly)
-------------------------------------------------------------------------
* **Slots** of a stage with ``n`` units are its alternate positions counted from the end:
  ``n-1, n-3, n-5, ...`` (rule 1); with ``keep_first`` (default) position 0 is never a slot,
  because the first unit of a stage carries the stride / width change.
* Candidate 0 is the baseline pattern (all ``C``); it is always accepted.
* A **stage pointer** ``s`` starts at the last stage. The next candidate is the current accepted
  pattern with the first slot of stage ``s`` (in slot order) that is still ``C`` turned into ``M``.
  If stage ``s`` has no such slot, ``s`` moves to ``s - 1`` (repeatedly).
* The candidate is trained for every seed in ``seeds``; its score is the **mean** over seeds of
  the metric (validation NLL, lower is better, or accuracy, higher is better).
* **Accept** if the score beats the current accepted pattern's score by more than ``min_delta``
  (strictly); the candidate becomes the current pattern, ``s`` stays (rule 1 continues in the
  same stage). **Reject** otherwise: the pattern is reverted (the current pattern is unchanged)
  and ``s`` moves to ``s - 1`` (rule 2: try the end of an earlier stage).
* **Stop** when ``s < min_stage`` (no stage left that may take another MSA), after ``patience``
  consecutive rejections (``None`` = no limit), or when ``max_candidates`` candidates (baseline
  included) have been evaluated. The final pattern is the last accepted one.

Rule 3 is carried by :func:`heads_per_stage` and ``SearchConfig.model_kwargs`` (heads grow by
``growth`` per stage; MSA width = stage width, which grows in the model), which reach the trainer
with every candidate.

Log and resume
--------------
Every finished training (pattern, seed) and every decided candidate is written to a JSON log
(atomically: temp file + rename) right away. Started again with the same settings, the search
replays the procedure and takes finished trainings from the log instead of training them again,
so the final log equals the one an uninterrupted run writes. Other settings raise
``LandscapeError``.

The trainer is injected: ``trainer(pattern, model_kwargs, seed) -> {"acc", "nll", "params", ...}``
so the logic is testable without training; :class:`RegistryTrainer` is the real one.
"""
from __future__ import annotations

from .buildup import FAMILIES, BuildupSettings, buildup_run, run_buildup
from .patterns import (
    Pattern,
    baseline_pattern,
    heads_per_stage,
    next_slot,
    parse_pattern,
    pattern_str,
    stage_slots,
    with_msa,
)
from .search import METRICS, SCHEMA, SearchConfig, SearchResult, Trainer, better, run_search, spread
from .trainer import RegistryTrainer, compare_models, model_size, split_validation

__all__ = ["FAMILIES", "METRICS", "SCHEMA", "BuildupSettings", "Pattern", "RegistryTrainer",
           "SearchConfig", "SearchResult", "Trainer", "baseline_pattern", "better", "buildup_run",
           "compare_models", "heads_per_stage", "model_size", "next_slot", "parse_pattern",
           "pattern_str", "run_buildup", "run_search", "spread", "split_validation",
           "stage_slots", "with_msa"]
