"""Prefect tasks, one module per stage."""
