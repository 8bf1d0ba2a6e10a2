"""A run's budget before it starts: the estimate's `low` against `llm.max_run_tokens` and
`llm.max_run_cost_usd`. A run whose least likely cost already crosses its budget does not start
(it sends no request); otherwise it starts, and the spend gate (graphrag_flow/llm/spend.py) stops
it sending before it crosses the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphrag_flow.config import Settings
from graphrag_flow.errors import BudgetExceededError
from graphrag_flow.llm.spend import SpendGate

#: How a run over budget goes on, in every message that stops one.
HOW_TO_GO_ON = ("raise the budget (llm.max_run_tokens / llm.max_run_cost_usd in settings.yaml, or "
                "`graphrag-flow index --max-cost USD`), or run again without one")


def has_budget(settings: Settings) -> bool:
    return settings.llm.max_run_tokens is not None or settings.llm.max_run_cost_usd is not None


def require_estimate_within_budget(root: Path, settings: Settings) -> dict[str, Any] | None:
    """The estimate when a budget is set (None otherwise); raises BudgetExceededError when its
    `low` crosses the budget."""
    if not has_budget(settings):
        return None
    from graphrag_flow.estimate import estimate_project

    estimate = estimate_project(root, settings)
    llm, total = settings.llm, estimate["total"]
    over = []
    if llm.max_run_tokens is not None and total["tokens"]["low"] > llm.max_run_tokens:
        over.append(f"at least {total['tokens']['low']:,} tokens (estimate {total['tokens']['low']:,}-"
                    f"{total['tokens']['high']:,}) against llm.max_run_tokens {llm.max_run_tokens:,}")
    cost = total["cost_usd"]
    if llm.max_run_cost_usd is not None and cost is not None and cost["low"] > llm.max_run_cost_usd:
        over.append(f"at least ${cost['low']:.4f} (estimate ${cost['low']:.4f}-${cost['high']:.4f}) against "
                    f"the budget of ${llm.max_run_cost_usd:.4f} (llm.max_run_cost_usd or --max-cost)")
    if over:
        raise BudgetExceededError(
            f"the run was not started: it would cost {'; and '.join(over)}; no request was sent. "
            f"To go on, {HOW_TO_GO_ON} (`graphrag-flow estimate --root {root}` shows the estimate per stage)")
    return estimate


def budget_spent_error(gate: SpendGate) -> BudgetExceededError:
    """The run stopped sending at its budget: what was spent, and how to go on."""
    return BudgetExceededError(
        f"the run's budget is reached ({gate.describe()}); {gate.refused} request(s) were not sent. "
        f"Every answer received is kept in the answer cache, so the next run pays for none of them again. "
        f"To go on, {HOW_TO_GO_ON}")


def spending_report(settings: Settings) -> tuple[list[str], list[str]]:
    """What `check` says of prices and budgets: (lines, warnings)."""
    llm = settings.llm
    p = llm.price_per_million_tokens
    lines = [("prices per million tokens: " + f"prompt ${p.prompt:g}, completion ${p.completion:g}, "
              f"embedding ${p.embedding:g} (llm.price_per_million_tokens)") if p is not None else
             "prices: not set (llm.price_per_million_tokens): a run's cost shows as unknown"]
    budget = [f"{llm.max_run_tokens:,} tokens (llm.max_run_tokens)" if llm.max_run_tokens is not None else "",
              f"${llm.max_run_cost_usd:g} (llm.max_run_cost_usd)" if llm.max_run_cost_usd is not None else ""]
    budget = [b for b in budget if b]
    lines.append("budget per run: " + (" and ".join(budget) if budget else "none"))
    return lines, budget_warnings(settings)


def budget_warnings(settings: Settings) -> list[str]:
    """What is wrong with a budget that does not stop a run: said by `check` and logged by `index`."""
    llm = settings.llm
    warnings = []
    if llm.max_run_cost_usd is not None and llm.price_per_million_tokens is None:
        warnings.append("llm.max_run_cost_usd is set but llm.price_per_million_tokens is not: a cost budget "
                        "cannot be held without prices (set them, or use llm.max_run_tokens)")
    if llm.provider == "offline" and has_budget(settings):
        warnings.append("a budget is set but llm.provider is offline: offline runs send no request")
    return warnings
