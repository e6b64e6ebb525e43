"""The result store: what identifies a result and the check before reuse (:mod:`.resume`),
data checksums (:mod:`.checksums`), atomic writes, locks and provenance (:mod:`.provenance`)."""
