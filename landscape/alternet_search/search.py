"""The build-up search itself: settings, scores, the resumable JSON log and :func:`run_search`."""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LandscapeError
from ..store.provenance import read_json, run_metadata, write_json
from ..store.resume import check, identity
from .patterns import Pattern, next_slot, parse_pattern, pattern_str, with_msa

SCHEMA = "landscape.alternet_search/1"
METRICS = ("nll", "acc")

Trainer = Callable[[Pattern, dict, int], dict]



@dataclass
class SearchConfig:
    """Settings of the build-up search (all recorded in the log)."""

    metric: str = "nll"
    seeds: tuple[int, ...] = (0,)
    min_delta: float = 0.0
    keep_first: bool = True
    min_stage: int = 0
    patience: int | None = None
    max_candidates: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, num_stages: int) -> None:
        if self.metric not in METRICS:
            raise LandscapeError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not self.seeds:
            raise LandscapeError("give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise LandscapeError(f"seeds repeat: {list(self.seeds)}")
        if not 0 <= self.min_stage < num_stages:
            raise LandscapeError(f"min_stage {self.min_stage} outside 0..{num_stages - 1}")
        if self.patience is not None and self.patience < 1:
            raise LandscapeError(f"patience must be >= 1, got {self.patience}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise LandscapeError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.min_delta < 0:
            raise LandscapeError(f"min_delta must be >= 0, got {self.min_delta}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = [int(s) for s in self.seeds]
        return d


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value), min and max."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def better(new: float, old: float, metric: str, min_delta: float = 0.0) -> bool:
    """True when score ``new`` improves on ``old`` by more than ``min_delta``."""
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return (old - new > min_delta) if metric == "nll" else (new - old > min_delta)


@dataclass
class SearchResult:
    """The outcome: final pattern, its model kwargs, and every candidate (log records)."""

    final_pattern: Pattern
    model_kwargs: dict[str, Any]
    candidates: list[dict[str, Any]]
    stop_reason: str
    log_path: Path | None

    @property
    def sequence(self) -> list[str]:
        """Accepted patterns in order (the build-up sequence)."""
        return [c["pattern"] for c in self.candidates if c["accepted"]]


def _plain(v: Any) -> Any:
    """Numbers as plain Python floats/ints (JSON), anything else unchanged."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return v


def _run_key(pattern: Pattern, seed: int) -> str:
    return f"{pattern_str(pattern)}@{int(seed)}"


def _identity(doc: dict[str, Any]) -> dict[str, Any]:
    """The result-store identity of a log (older logs: rebuilt from its header)."""
    if isinstance(doc.get("identity"), dict):
        return doc["identity"]
    return {"settings": {k: doc.get(k) for k in ("baseline", "search", "trainer")},
            "checkpoint_sha256": None, "versions": (doc.get("meta") or {}).get("versions")}


class _Log:
    """The JSON log: header, finished trainings (``runs``) and decided candidates."""

    def __init__(self, path: Path | None, header: dict[str, Any]) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"schema": SCHEMA, **header, "runs": [], "candidates": [],
                                    "status": "running", "final": None}
        self.old_runs: list[dict[str, Any]] = []
        self.logged: set[str] = set()
        if path is not None and path.exists():
            old = read_json(path)
            if old.get("schema") != SCHEMA:
                raise LandscapeError(f"{path} is not an AlterNet search log")
            check(path, "a search", _identity(old), header["identity"])
            self.doc["meta"] = old.get("meta", header.get("meta"))
            self.old_runs = list(old.get("runs", []))
        self.cache = {r["key"]: r for r in self.old_runs}
        self.resumed = len(self.cache)

    def add_run(self, rec: dict[str, Any]) -> None:
        """Log a finished training (once per key, in the order the search needs them)."""
        if rec["key"] not in self.logged:
            self.logged.add(rec["key"])
            self.doc["runs"].append(rec)
            self.save()

    def save(self) -> None:
        """Write the log; trainings of an earlier run not replayed yet are kept at the end."""
        if self.path is None:
            return
        pending = [r for r in self.old_runs if r["key"] not in self.logged]
        write_json(self.path, {**self.doc, "runs": self.doc["runs"] + pending})


def run_search(trainer: Trainer, baseline: Pattern | str, config: SearchConfig,
               log_path: str | Path | None = None, *, trainer_info: dict | None = None,
               clock: Callable[[], float] = time.perf_counter,
               progress: bool = False) -> SearchResult:
    """Run the AlterNet build-up from ``baseline`` (see the module docstring for the rules).

    ``trainer(pattern, model_kwargs, seed)`` trains one model and returns at least ``acc`` and
    ``nll`` on validation data (``params``, ``time_s`` and other numbers are logged if given; the
    wall time is measured with ``clock`` when ``time_s`` is missing). ``trainer_info`` (the
    training recipe) goes into the log header and must match on resume.
    """
    base = parse_pattern(baseline)
    config.validate(len(base))
    if any(u != "C" for u in "".join(base)):
        raise LandscapeError(f"the baseline must be all conv units, got {pattern_str(base)}")
    path = Path(log_path) if log_path is not None else None
    # through JSON once, so a resumed log compares equal (tuples become lists, ...)
    header = {"meta": run_metadata(), "baseline": pattern_str(base),
              "search": json.loads(json.dumps(config.to_dict(), default=str)),
              "trainer": json.loads(json.dumps(trainer_info or {}, default=str))}
    header["identity"] = identity({k: header[k] for k in ("baseline", "search", "trainer")})
    log = _Log(path, header)
    log.save()
    if log.resumed and progress:
        print(f"resuming {path}: {log.resumed} finished trainings reused", file=sys.stderr)
    decided: list[dict[str, Any]] = log.doc["candidates"]

    def evaluate(pattern: Pattern) -> dict[str, Any]:
        kwargs = {**config.model_kwargs, "pattern": pattern_str(pattern)}
        runs = []
        for seed in config.seeds:
            key = _run_key(pattern, seed)
            rec = log.cache.get(key)
            if rec is None:
                if progress:
                    print(f"training {pattern_str(pattern)} seed {seed}", file=sys.stderr)
                t0 = clock()
                out = dict(trainer(pattern, dict(kwargs), int(seed)))
                dt = clock() - t0
                for k in ("acc", "nll"):
                    if k not in out:
                        raise LandscapeError(f"trainer returned no {k!r} (got {sorted(out)})")
                rec = {"key": key, "pattern": pattern_str(pattern), "seed": int(seed),
                       **{k: _plain(v) for k, v in out.items()}}
                rec.setdefault("time_s", float(dt))
                log.cache[key] = rec
            log.add_run(rec)
            runs.append(rec)
        acc = [float(r["acc"]) for r in runs]
        nll = [float(r["nll"]) for r in runs]
        sa, sn = spread(acc), spread(nll)
        return {"pattern": pattern_str(pattern), "model_kwargs": kwargs,
                "params": runs[0].get("params"), "seeds": [int(s) for s in config.seeds],
                "acc": acc, "nll": nll, "acc_mean": sa["mean"], "nll_mean": sn["mean"],
                "acc_spread": sa, "nll_spread": sn,
                "time_s": float(sum(float(r.get("time_s", 0.0)) for r in runs))}

    def score(c: dict[str, Any]) -> float:
        return c["nll_mean"] if config.metric == "nll" else c["acc_mean"]

    def record(c: dict[str, Any], **extra: Any) -> dict[str, Any]:
        c = {"index": len(decided), **c, "score": score(c), **extra}
        decided.append(c)
        log.save()
        if progress:
            print(f"candidate {c['index']} {c['pattern']}: acc={c['acc_mean']:.4f} "
                  f"nll={c['nll_mean']:.4f} -> {'accepted' if c['accepted'] else 'rejected'} "
                  f"({c['reason']})", file=sys.stderr)
        return c

    current = record(evaluate(base), stage=None, slot=None, parent=None, rule="baseline",
                     best_before=None, accepted=True, reason="baseline")
    current_pattern = base
    stage = len(base) - 1
    rejections = 0
    stop = ""
    while True:
        if config.max_candidates is not None and len(decided) >= config.max_candidates:
            stop = f"max_candidates ({config.max_candidates}) reached"
            break
        nxt = next_slot(current_pattern, stage, config.keep_first, config.min_stage)
        if nxt is None:
            stop = "no stage can take another MSA block"
            break
        if rejections:
            rule = "2: last MSA reverted; end of an earlier stage"
        elif nxt[0] < stage:
            rule = "1: stage full; continue in an earlier stage"
        else:
            rule = "1: next alternate Conv from the end"
        stage = nxt[0]
        cand = with_msa(current_pattern, *nxt)
        res = evaluate(cand)
        before = current["score"]
        ok = better(score(res), before, config.metric, config.min_delta)
        c = record(res, stage=nxt[0], slot=nxt[1], parent=current["index"], rule=rule,
                   best_before=before, accepted=ok,
                   reason=(f"{config.metric} {score(res):.6g} "
                           f"{'improves on' if ok else 'does not improve on'} {before:.6g}"))
        if ok:
            current, current_pattern, rejections = c, cand, 0
        else:
            rejections += 1
            stage -= 1
            if config.patience is not None and rejections >= config.patience:
                stop = f"{rejections} consecutive rejections (patience {config.patience})"
                break
            if stage < config.min_stage:
                stop = "no earlier stage left to try"
                break
    final_kwargs = {**config.model_kwargs, "pattern": pattern_str(current_pattern)}
    log.doc["status"] = "finished"
    log.doc["final"] = {"pattern": pattern_str(current_pattern), "candidate": current["index"],
                        "model_kwargs": final_kwargs, "stop_reason": stop,
                        "sequence": [c["pattern"] for c in decided if c["accepted"]],
                        "acc_mean": current["acc_mean"], "nll_mean": current["nll_mean"]}
    log.save()
    return SearchResult(current_pattern, final_kwargs, list(decided), stop, path)
