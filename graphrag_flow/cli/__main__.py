"""`python -m graphrag_flow.cli`: the `graphrag-flow` command."""

from graphrag_flow.cli import app

app()
