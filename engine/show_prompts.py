"""`mtpa-engine run GRID --show-prompts N`: the first N rendered prompts of each benchmark × condition, as the
plan builds them for the grid's first model (a prompt does not depend on the model: a local model's chat
template is applied later, by its provider). Calls nothing, writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from engine.plan import Cell, Plan

SUMMARY_PLACEHOLDER = "<the model's own summary of this persona: written by the summary call first>"


def preview(plan: Plan, n: int) -> Iterator[str]:
    """One text block per prompt: a header naming benchmark, condition, item and persona, then the chat turns
    (`[role]` lines before each turn) or, in completion format, the prompt exactly as sent; in likelihood mode
    the scored continuations after it, one repr() a line (their leading spaces matter). A `summary = true`
    cell shows both calls: the summary request, then the answer request with SUMMARY_PLACEHOLDER where the
    model's summary goes (it exists only once the model has written it)."""
    model = plan.grid.models[0]
    for bench in plan.benchmarks:
        for condition in plan.grid.conditions:
            pairs = list(islice(plan.pairs(bench, condition), n))
            for k, (persona, item, order, perm) in enumerate(pairs, 1):
                cell = Cell(0, model, bench.config.label, item, condition, persona, 0, order, perm)
                summary = plan.summary_request(cell)
                if summary is not None:
                    cell = cell.with_summary(SUMMARY_PLACEHOLDER)
                req = plan.request(cell)
                head = (
                    f"=== {bench.config.label} × {condition.name}: prompt {k}/{len(pairs)}, item {item.id}"
                    f"{f' (order {order})' if order else ''}, persona {persona.id if persona and condition.format else '-'}, "
                    f"format {bench.config.format}, mode {bench.config.mode} ==="
                )
                body = req.prompt if req.prompt is not None else "\n".join(f"[{role}]\n{content}" for role, content in req.messages)
                if summary is not None:
                    body = "--- summary call ---\n" + "\n".join(f"[{role}]\n{content}" for role, content in summary.messages) + "\n--- answer call ---\n" + body
                tail = "".join(f"\n{c!r}" for c in req.continuations)
                yield f"{head}\n{body}" + (f"\n--- scored continuations ---{tail}" if tail else "")
