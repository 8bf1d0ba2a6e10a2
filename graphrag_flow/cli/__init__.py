"""The `graphrag-flow` command line (init, index, status, check): commands.py.

The entry point of the product, and the one part of graphrag_flow/ that reaches the Prefect
layers: `index` runs the flow (flows/index.py) and `check` resolves Prefect Secret blocks
(flows/secret_lookup.py), each imported when the command runs.
"""

from graphrag_flow.cli.commands import app

__all__ = ["app"]
