"""The report's analyses, each a lazy query over the results that feeds `aggregate`:

- scores: every condition's plain score (what a grid without a baseline can still report);
- persona effect: Δ = score(persona) − score(baseline), paired on model × benchmark × question × sample (and
  persona, where the baseline's answer was judged against each persona: a rubric quoting {persona});
- trait ablation: score(full persona) − score(persona less some traits), paired on the same persona too;
- pass@k and answer agreement across samples, and answer agreement across persona render formats.

Only `status == ok` rows are scored; errored calls have no answer and are counted apart. An invalid answer
scores 0 and its rate is reported beside every score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.report.aggregate import OVERALL, Index, Ratio, Settings, Spec, aggregate
from engine.report.load import Condition, Run
from engine.report.stats import pass_at_k

FAMILY = ("model", "benchmark", "condition")
PAIR = ("model", "benchmark", "item_id", "sample")
INVALID_ANSWER = "(invalid)"  # an unparseable answer agrees with another unparseable one, not with a letter


def interval_note(settings: Settings) -> str:
    """How the report's intervals and p-values were made, for the notes above its tables (plain text)."""
    s = settings
    return (
        f"Intervals are 95%. For Δ (and trait-ablation effects): groups with at least {s.min_size} personas and {s.min_size} questions get a "
        f"percentile interval and a two-sided p from {s.resamples:,} seeded paired bootstrap resamples (seed {s.seed}) over questions and personas; "
        "smaller groups a two-way (persona × question) cluster-robust t interval and p with few-cluster degrees of freedom (p_method cluster-t); "
        "a group with fewer than 2 personas or 2 questions, or whose paired differences do not vary, gets neither. "
        "q = Benjamini-Hochberg within each table, separately for bootstrap and cluster-t rows. Scores' intervals are bootstrap."
    )


def _ok(run: Run) -> pl.LazyFrame:
    return run.results.filter(pl.col("status") == "ok")


def _cells(frame: pl.LazyFrame, index: Index, columns: Sequence[str | pl.Expr]) -> pl.DataFrame:
    # Categorical keys: 4 bytes a row instead of a string each, and an integer sort in `aggregate`.
    return index.attach(frame).select(*(pl.col(k).cast(pl.Categorical) for k in FAMILY), "q", "p", *columns).collect()


def scores(run: Run, index: Index) -> pl.DataFrame:
    cells = _cells(
        _ok(run),
        index,
        [
            "value",
            pl.col("invalid").cast(pl.Float64).alias("invalid"),
            pl.col("p_gold"),
            pl.col("p_gold").is_not_null().cast(pl.Float64).alias("p_gold_n"),
        ],
    )
    ratios = [Ratio("score", "value"), Ratio("invalid", "invalid", boot=False), Ratio("p_gold", "p_gold", "p_gold_n", boot=False)]
    table = aggregate(cells, ratios, index)[OVERALL]
    errors = run.results.group_by(FAMILY).agg((pl.col("status") != "ok").sum().alias("errors")).collect()
    return with_direction(_in_grid_order(table.join(errors, on=list(FAMILY), how="left"), run), run)


def persona_effect(run: Run, index: Index, specs: Sequence[Spec]) -> dict[Spec, pl.DataFrame]:
    if run.baseline is None:
        return {}
    ok = _ok(run)
    base = ok.filter(pl.col("condition") == run.baseline).select(
        *PAIR, "persona_id", pl.col("value").alias("base"), pl.col("invalid").alias("base_invalid"), pl.col("p_gold").alias("base_p_gold")
    )
    persona = ok.filter(pl.col("condition") != run.baseline)
    # A baseline answer is one per question, or, where a rubric judged it against each persona (persona_fit),
    # one per question × persona: those pair on the persona too.
    paired = pl.concat([
        persona.join(base.filter(pl.col("persona_id").is_null()).drop("persona_id"), on=list(PAIR), how="inner"),
        persona.join(base.filter(pl.col("persona_id").is_not_null()), on=[*PAIR, "persona_id"], how="inner"),
    ])
    p_gold_delta = pl.col("p_gold") - pl.col("base_p_gold")
    cells = _cells(
        paired,
        index,
        [
            "value",
            "base",
            pl.col("invalid").cast(pl.Float64).alias("invalid"),
            pl.col("base_invalid").cast(pl.Float64),
            p_gold_delta.alias("delta_p"),
            p_gold_delta.is_not_null().cast(pl.Float64).alias("delta_p_n"),
        ],
    )
    ratios = [
        Ratio("baseline", "base"),
        Ratio("persona", "value"),
        Ratio("delta", "value", minus="base"),
        Ratio("inv_base", "base_invalid", boot=False),
        Ratio("inv_persona", "invalid", boot=False),
        Ratio("delta_p", "delta_p", "delta_p_n", boot=False),
    ]
    return {spec: with_direction(_in_grid_order(t, run), run) for spec, t in aggregate(cells, ratios, index, specs, test="delta").items()}


def with_direction(table: pl.DataFrame, run: Run) -> pl.DataFrame:
    """`table` with a last column `higher_is_better` per benchmark (the adapter's, from the run's manifest;
    null where the run does not say): a Δ's sign means "better" only where it is true. CrowS-Pairs' score is
    choosing the stereotype, so its positive Δ is more bias; the sign is shown as computed, never flipped."""
    if table.is_empty() or "benchmark" not in table.columns:
        return table
    direction = pl.col("benchmark").replace_strict(run.higher_is_better, default=None, return_dtype=pl.Boolean)
    return table.with_columns(direction.alias("higher_is_better"))


def ablation_references(run: Run) -> dict[str, str]:
    """Each partial-persona condition → the full-persona condition it is compared with: same format and
    placement if the grid has one, else same format, else the first full-persona condition."""
    full = [c for c in run.persona_conditions if c.traits == "all" and c.format not in (None, "unknown")]
    refs = {}
    for c in run.persona_conditions:
        if c.traits == "all" or not full:
            continue
        same = [f for f in full if f.format == c.format and f.placement == c.placement] or [f for f in full if f.format == c.format]
        refs[c.name] = (same or full)[0].name
    return refs


def removed_traits(c: Condition) -> str:
    """What a partial persona leaves out, i.e. what its effect column measures."""
    return {"demographic": "values traits", "values": "demographic traits"}.get(c.traits, c.traits.removeprefix("-"))


def trait_ablation(run: Run, index: Index) -> pl.DataFrame:
    refs = ablation_references(run)
    if not refs:
        return pl.DataFrame()
    ok = _ok(run)
    mapping = pl.LazyFrame({"condition": list(refs), "reference": list(refs.values())})
    ref = ok.select(*PAIR, "persona_id", pl.col("condition").alias("reference"), pl.col("value").alias("ref"))
    paired = ok.join(mapping, on="condition").join(ref, on=[*PAIR, "persona_id", "reference"], how="inner")
    cells = _cells(paired, index, ["value", "ref"])
    ratios = [Ratio("score", "value"), Ratio("reference_score", "ref"), Ratio("effect", "ref", minus="value")]
    table = aggregate(cells, ratios, index, test="effect")[OVERALL]
    labels = pl.DataFrame(
        {
            "condition": list(refs),
            "traits": [run.conditions[c].traits for c in refs],
            "removed": [removed_traits(run.conditions[c]) for c in refs],
            "reference": list(refs.values()),
        }
    )
    return _in_grid_order(table.join(labels, on="condition", how="left"), run)


def sample_consistency(run: Run, index: Index) -> pl.DataFrame:
    """pass@k (unbiased, pass = full credit) and pairwise answer agreement across a cell's k samples."""
    ok = _ok(run)
    k = int(ok.select(pl.col("sample").max()).collect().item() or 0) + 1
    if k < 2:
        return pl.DataFrame()
    cell = [*FAMILY, "item_id", "persona_id"]
    per_answer = ok.group_by(*cell, pl.col("answer").fill_null(INVALID_ANSWER)).agg(pl.len().alias("m"))
    agree = per_answer.group_by(cell).agg((pl.col("m") * (pl.col("m") - 1)).sum().alias("same_pairs"))
    counts = ok.group_by(cell).agg(pl.len().alias("samples"), (pl.col("value") >= 1.0).sum().alias("passes"))
    cells = _cells(counts.join(agree, on=cell, how="left", nulls_equal=True), index, ["samples", "passes", "same_pairs"])
    samples, passes = cells["samples"].to_numpy(), cells["passes"].to_numpy()
    pairs = samples * (samples - 1.0)
    columns = {"agreement": np.where(pairs > 0, cells["same_pairs"].to_numpy() / np.maximum(pairs, 1.0), 0.0), "agreement_n": (pairs > 0) * 1.0}
    ratios = []
    for j in sorted({1, k} | {j for j in (2, 5, 10, 20, 50, 100) if j < k}):
        estimate = pass_at_k(samples, passes, j)
        columns[f"pass{j}"], columns[f"pass{j}_n"] = np.nan_to_num(estimate), (~np.isnan(estimate)) * 1.0
        ratios.append(Ratio(f"pass@{j}", f"pass{j}", f"pass{j}_n"))
    ratios.append(Ratio("agreement", "agreement", "agreement_n"))
    table = aggregate(cells.with_columns(**columns), ratios, index)[OVERALL]
    return _in_grid_order(table.with_columns(pl.lit(k).alias("k")), run)


def format_agreement(run: Run, index: Index) -> pl.DataFrame:
    """Share of pairs of render formats (conditions alike but for `format`: same traits, placement, reasoning and
    summary) that give the same answer to the same question for the same persona and sample: robustness to the
    persona's surface form. Conditions differing in anything else (a reasoning or summary mode) are not compared."""
    groups: dict[tuple, dict[str, str]] = {}  # everything but the format -> {format: the first condition showing it}
    for c in run.persona_conditions:
        if c.format not in (None, "unknown"):
            groups.setdefault((c.traits, c.placement, c.reasoning, c.summary), {}).setdefault(c.format, c.name)
    groups = {g: list(by_format.values()) for g, by_format in groups.items() if len(by_format) > 1}
    if not groups:
        return pl.DataFrame()
    mapping = pl.LazyFrame({"condition": [n for names in groups.values() for n in names], "set": ["+".join(names) for names in groups.values() for _ in names]})
    rows = _ok(run).join(mapping, on="condition")
    cell = ["model", "benchmark", "set", *PAIR[2:], "persona_id"]
    per_answer = rows.group_by(*cell, pl.col("answer").fill_null(INVALID_ANSWER)).agg(pl.len().alias("m"))
    frame = per_answer.group_by(cell).agg(pl.col("m").sum().alias("formats"), (pl.col("m") * (pl.col("m") - 1)).sum().alias("same_pairs"))
    frame = frame.filter(pl.col("formats") > 1).with_columns(
        (pl.col("same_pairs") / (pl.col("formats") * (pl.col("formats") - 1))).alias("agreement"), pl.col("set").alias("condition")
    )
    return aggregate(_cells(frame, index, ["agreement"]), [Ratio("agreement", "agreement")], index)[OVERALL]


def _in_grid_order(table: pl.DataFrame, run: Run) -> pl.DataFrame:
    """Rows by model and benchmark as they come, conditions in grid order (baseline first), subgroups sorted."""
    if table.is_empty():
        return table
    order = {name: i for i, name in enumerate(run.conditions)}
    rank = pl.col("condition").replace_strict(order, default=len(order), return_dtype=pl.Int32)
    extra = [c for c in table.columns if c not in FAMILY and table[c].dtype == pl.String and c not in ("traits", "removed", "reference")]
    return table.sort("model", "benchmark", rank, *extra, nulls_last=True)
