"""Feature-map analyses over a model's block list: Fourier ΔlogA (:mod:`.fourier`), feature-map
variance (:mod:`.variance`), CKA similarity (:mod:`.similarity`), frequency-band noise robustness
(:mod:`.robustness`) and the block lesion study (:mod:`.lesion`), all streaming block outputs
through :mod:`.streaming`."""
