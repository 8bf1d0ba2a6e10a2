"""graphrag-flow: the domain library (no Prefect imports)."""

__version__ = "0.1.0"
