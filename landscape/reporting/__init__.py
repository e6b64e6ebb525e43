"""Reporting: figures drawn from the raw result files (:mod:`.plots`) and the HTML report with
its claims table (:mod:`.report`, formatting helpers in :mod:`.report_format`)."""
