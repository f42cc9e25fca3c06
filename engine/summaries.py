"""Persona summaries (`summary = true` conditions) looked up without calling anything.

A summary cell's answer request embeds the model's summary of its persona (engine.plan), so it can only be
built, and its cache key known, once that summary exists. The scheduler asks for missing summaries itself; the
dry run, the cost estimate and the preflight (which call nothing) use `resolve` to split a chunk of cells into
those whose answer request can be built now and the summary calls still to make.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from engine.cache import ResponseCache
from engine.plan import Cell, Plan
from engine.request import Request, Response


def known_summaries(cache: ResponseCache | None, keys: Sequence[str], fresh: Mapping[str, Response] | None = None) -> dict[str, str]:
    """Summary key -> summary text for the keys answered: in `fresh` (a run's answers not yet committed), else
    in the cache (None: no cache yet). Keys with no answer are left out."""
    fresh = fresh or {}
    out = {k: fresh[k].text or "" for k in keys if k in fresh}
    rest = [k for k in keys if k not in out]
    if rest and cache is not None:
        out.update({k: hit.text or "" for k, hit in cache.lookup(rest).items()})
    return out


@dataclass
class Resolved:
    """One chunk of cells, split by whether their persona summary exists."""

    ready: list[Cell] = field(default_factory=list)  # cells whose answer request can be built (summaries filled in)
    missing: dict[str, Request] = field(default_factory=dict)  # summary calls not answered yet, by cache key
    waiting: list[Cell] = field(default_factory=list)  # cells whose summary is one of `missing`


def resolve(plan: Plan, key: Callable[[Request], str], cache: ResponseCache | None, cells: Sequence[Cell]) -> Resolved:
    """Split `cells` (one model's) into ready and waiting, filling in cached summaries. Calls nothing.
    `key`: the cache key of a request to that model (callers pass `lambda r: keys.of(model, r)`, engine.keys)."""
    out = Resolved()
    wanted = {i: r for i, c in enumerate(cells) if (r := plan.summary_request(c)) is not None} if plan.has_summaries else {}
    if not wanted:
        out.ready = list(cells)
        return out
    keys = {i: key(r) for i, r in wanted.items()}
    texts = known_summaries(cache, list(set(keys.values())))
    for i, cell in enumerate(cells):
        skey = keys.get(i)
        if skey is None:
            out.ready.append(cell)
        elif skey in texts:
            out.ready.append(cell.with_summary(texts[skey]))
        else:
            out.missing[skey] = wanted[i]
            out.waiting.append(cell)
    return out
