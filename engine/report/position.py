"""Position bias and order consistency: does a model pick options by where they are rather than what they say?

Position bias (always computed): per model × benchmark × condition, the share of cells whose answer sits at each
option position (A, B, …) next to the share whose gold sits there, and the invalid share. The test compares the
two position distributions over the cells with a valid answer: Pearson's χ² on the 2 × K table (answers, golds)
× positions, which with equal row totals reduces to

    χ² = Σ_j (a_j − g_j)² / (a_j + g_j),   df = (positions with a_j + g_j > 0) − 1.

A model choosing by content lands on the gold's positions in distribution, whatever its accuracy; one that prefers
a letter piles up there. The cells are not independent (one question is asked of many personas), so the p-value
is a screening flag, liberal by design, not an inference. A warning is raised when one position takes more than
half of the cells and at least 25 points more than the gold's share there (so a benchmark whose gold really sits
mostly at A is not flagged, nor a 2-option one at 55%), or when the test rejects at p < 0.001.

Order consistency (grids with `orders` > 1): the share of (question, persona, sample) units whose chosen option
content is the same in every order; a unit with an invalid answer in any order is not consistent.
"""

from __future__ import annotations

import math

import polars as pl

from engine.report.aggregate import OVERALL, Index, Ratio, aggregate

FAMILY = ("model", "benchmark", "condition")
UNIT = (*FAMILY, "item_id", "persona_id", "sample")
WARN_SHARE = 0.5  # one position takes more than half of the cells ...
WARN_EXCESS = 0.25  # ... and at least this much more than the gold's share there
WARN_P = 0.001


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df ≥ x): the regularized upper incomplete gamma function Q(df/2, x/2), by its power series below
    a + 1 and its continued fraction (modified Lentz) above, as in Numerical Recipes §6.2; relative error
    < 1e-13. Checked against the closed forms Q(1/2, x/2) = erfc(√(x/2)) and Q(1, x/2) = e^(−x/2)."""
    if df < 1:
        raise ValueError(f"chi2_sf: df must be a positive integer, got {df}")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    a, z = df / 2.0, x / 2.0
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:  # P(a, z) = e^(−z) z^a / Γ(a) · Σ z^n / (a (a+1) … (a+n))
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1.0
            term *= z / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300  # Q(a, z) = e^(−z) z^a / Γ(a) · 1 / (z + 1 − a − 1·(1−a) / (z + 3 − a − …))
    b = z + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_answers_vs_gold(answers: list[int], golds: list[int]) -> tuple[float | None, int | None, float | None]:
    """(χ², df, p) of answer against gold position counts (same cells, same positions); None when fewer than
    two positions occur."""
    used = [(a, g) for a, g in zip(answers, golds) if a + g > 0]
    if len(used) < 2:
        return None, None, None
    stat = sum((a - g) ** 2 / (a + g) for a, g in used)
    df = len(used) - 1
    return stat, df, chi2_sf(stat, df)


def position_bias(rows: pl.LazyFrame) -> pl.DataFrame:
    """One row per model × benchmark × condition × position with `cells`, `answered` and `gold` (counts),
    `answer_share` and `gold_share` (of the family's cells) and, repeated on every row of a family, `invalid`
    (share), `chi2`, `df`, `p`, and `orders_min` and `orders` (the fewest and most option orders a question had). Only scored multiple-
    choice cells count: `status == ok` and a gold letter (free-text judged cells have none)."""
    ok = rows.filter((pl.col("status") == "ok") & pl.col("gold").is_not_null())
    per_item = ok.group_by(*FAMILY, "item_id").agg((pl.col("order").max().fill_null(0) + 1).alias("orders"))
    cells = ok.group_by(FAMILY).agg(pl.len().alias("cells"), pl.col("invalid").cast(pl.Float64).mean().alias("invalid")).join(
        per_item.group_by(FAMILY).agg(pl.col("orders").min().alias("orders_min"), pl.col("orders").max()), on=list(FAMILY)
    )
    valid = ok.filter(pl.col("answer").is_not_null())
    answered = valid.group_by(*FAMILY, pl.col("answer").alias("position")).agg(pl.len().alias("answered"))
    gold_all = ok.group_by(*FAMILY, pl.col("gold").alias("position")).agg(pl.len().alias("gold"))
    gold_valid = valid.group_by(*FAMILY, pl.col("gold").alias("position")).agg(pl.len().alias("gold_valid"))
    keys = [*FAMILY, "position"]
    table = (
        pl.concat([answered.select(keys), gold_all.select(keys)])
        .unique()
        .join(answered, on=keys, how="left")
        .join(gold_all, on=keys, how="left")
        .join(gold_valid, on=keys, how="left")
        .join(cells, on=list(FAMILY), how="left")
        .with_columns(pl.col("answered", "gold", "gold_valid").fill_null(0))
        .with_columns((pl.col("answered") / pl.col("cells")).alias("answer_share"), (pl.col("gold") / pl.col("cells")).alias("gold_share"))
        .collect()
    )
    if table.is_empty():
        return table
    tests = []
    for family in table.partition_by(list(FAMILY), maintain_order=True):
        stat, df, p = chi2_answers_vs_gold(family["answered"].to_list(), family["gold_valid"].to_list())
        tests.append({**{k: family[k][0] for k in FAMILY}, "chi2": stat, "df": df, "p": p})
    test_frame = pl.DataFrame(tests, schema={**{k: pl.String for k in FAMILY}, "chi2": pl.Float64, "df": pl.Int64, "p": pl.Float64})
    table = table.join(test_frame, on=list(FAMILY), how="left").drop("gold_valid")
    columns = [*FAMILY, "position", "cells", "answered", "gold", "answer_share", "gold_share", "invalid", "chi2", "df", "p", "orders_min", "orders"]
    return table.select(columns).sort(*FAMILY, pl.col("position").str.len_chars(), "position")


def flagged(table: pl.DataFrame) -> pl.DataFrame:
    """The families that warrant a warning, one row each at its most chosen position (with `flag_share`:
    whether that position's share triggered it, and `flag_p`: whether the test did)."""
    if table.is_empty():
        return table
    top = table.sort("answer_share", descending=True).group_by(list(FAMILY), maintain_order=True).first()
    share = (pl.col("answer_share") > WARN_SHARE) & (pl.col("answer_share") - pl.col("gold_share") >= WARN_EXCESS)
    test = pl.col("p").is_not_null() & (pl.col("p") < WARN_P)
    return top.with_columns(share.alias("flag_share"), test.alias("flag_p")).filter(pl.col("flag_share") | pl.col("flag_p")).sort(list(FAMILY))


def warnings(table: pl.DataFrame | None) -> list[str]:
    """One sentence per flagged model × benchmark × condition, saying whether the scores are debiased."""
    out: list[str] = []
    if table is None:
        return out
    for r in flagged(table).iter_rows(named=True):
        pct, gold = round(100 * r["answer_share"]), round(100 * r["gold_share"])
        where = f"{r['benchmark']} cells (condition {r['condition']}; gold at {r['position']} in {gold}%)"
        if r["flag_share"]:
            text = f"model {r['model']} answered position {r['position']} in {pct}% of {where}"
        else:
            text = f"model {r['model']}'s answer positions differ from the gold's in {where}: most often {r['position']} ({pct}%), χ² = {r['chi2']:.1f}, df {r['df']}, p = {r['p']:.1g}"
        if r["orders_min"] > 1:
            span = str(r["orders"]) if r["orders_min"] == r["orders"] else f"{r['orders_min']}–{r['orders']}"
            text += f"; the scores average each question over its {span} option orders, so they do not reward the preference"
        else:
            text += '; scores mostly reflect option order (set the benchmark\'s orders = "cyclic" to average it out)'
        out.append(text)
    return out


def display(table: pl.DataFrame) -> pl.DataFrame:
    """One row per family: answer and gold shares by position, invalid share, the test, and a ⚠ flag."""
    if table.is_empty():
        return table
    marks = {tuple(r[k] for k in FAMILY) for r in flagged(table).iter_rows(named=True)}
    rows = []
    for family in table.partition_by(list(FAMILY), maintain_order=True):
        r = family.row(0, named=True)
        rows.append({
            "model": r["model"], "benchmark": r["benchmark"], "condition": r["condition"], "cells": str(r["cells"]),
            "answers by position": " ".join(f"{p} {100 * s:.0f}%" for p, s in zip(family["position"], family["answer_share"])),
            "gold by position": " ".join(f"{p} {100 * s:.0f}%" for p, s in zip(family["position"], family["gold_share"])),
            "invalid": f"{100 * r['invalid']:.0f}%",
            "χ² (df)": "–" if r["chi2"] is None else f"{r['chi2']:.1f} ({r['df']})",
            "p": "–" if r["p"] is None else f"{r['p']:.2g}",
            "orders": str(r["orders"]) if r["orders_min"] == r["orders"] else f"{r['orders_min']}–{r['orders']}",
            "flag": "⚠" if tuple(r[k] for k in FAMILY) in marks else "",
        })
    return pl.DataFrame(rows)


def order_consistency(rows: pl.LazyFrame, index: Index) -> pl.DataFrame:
    """Share of (question, persona, sample) units that chose the same option content in every order, with its
    bootstrap interval (questions and personas resampled as for Δ), per model × benchmark × condition; empty
    when no question was shown in more than one order."""
    ok = rows.filter((pl.col("status") == "ok") & pl.col("gold").is_not_null())
    units = ok.group_by(UNIT).agg(
        pl.len().alias("orders"),
        (pl.col("option").null_count() == 0) & (pl.col("option").n_unique() == 1),
    ).filter(pl.col("orders") > 1)
    cells = index.attach(units.rename({"option": "consistent"})).select(
        *(pl.col(k).cast(pl.Categorical) for k in FAMILY), "q", "p", pl.col("consistent").cast(pl.Float64), pl.col("orders").cast(pl.Float64)
    ).collect()
    if cells.is_empty():
        return pl.DataFrame()
    ratios = [Ratio("consistency", "consistent"), Ratio("orders", "orders", boot=False)]
    return aggregate(cells, ratios, index)[OVERALL]
