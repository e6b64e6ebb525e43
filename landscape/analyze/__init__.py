"""``landscape analyze``: every analysis of several checkpoints, the claims and the report.

- :mod:`.config`: :class:`~.config.AnalyzeConfig`, the budgets, TOML and ``--set``;
- :mod:`.cost`: the timed probe, the estimate and the quick budget's adaptation;
- :mod:`.steps`: one step per analysis (calling :mod:`landscape.runners`) and the joint
  figures;
- :mod:`.summarize`: the numbers of ``summary.json`` from each result;
- :mod:`.run`: :func:`~.run.analyze` (loading, the per-model loop, the summary, claims
  and report).
"""
