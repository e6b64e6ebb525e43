"""landscape: loss landscapes, Hessian spectra and feature-map analyses of vision models."""
__version__ = "0.1.0"
