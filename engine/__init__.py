"""mtpa-engine: persona x question x model x condition grids, cached, resumable, rate-limited."""

__version__ = "0.1.0"
