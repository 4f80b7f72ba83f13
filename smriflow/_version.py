"""smriflow's version, in one place (read by hatch and by provenance records)."""

__version__ = "0.1.0"
