"""Compute every aggregate of a report from a run folder (engine.report.write writes them out).

The report imports no benchmark adapter and no persona code: a benchmark's own tables (BBQ bias scores,
CrowS-Pairs preference, trait-inference alignment, ...) come from the `tables` functions the caller hands in
(`ReportOptions.benchmark_tables`; engine.benchmark_tables.BENCHMARK_TABLES is the full set)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from engine.report import effects, position
from engine.report.aggregate import OVERALL, Index, Settings, Spec
from engine.report.load import ReportError, Run, query_engine

DEFAULT_BY = ("country", "region", "sex", "age_band")
RUN_TABLES_BY: tuple[Spec, ...] = (("country",), ("sex",))  # what a run prints and writes when it ends

# (run, per-order result rows, subgroup specs, settings) -> table name -> table: a benchmark's own tables
BenchmarkTables = Callable[[Run, pl.LazyFrame, tuple[Spec, ...], Settings], dict[str, pl.DataFrame]]


@dataclass(frozen=True)
class ReportOptions:
    by: tuple[Spec, ...] | None = None  # None: whichever of DEFAULT_BY the personas have
    settings: Settings = field(default_factory=Settings)
    extras: bool = True  # trait ablation, pass@k and format agreement besides scores and Δ
    benchmark_tables: tuple[BenchmarkTables, ...] = ()  # each benchmark's own tables, from the caller


@dataclass
class Report:
    run: Run
    settings: Settings
    specs: tuple[Spec, ...]
    tables: dict[str, pl.DataFrame]  # name → aggregate; names are file stems

    def effect(self, spec: Spec = OVERALL) -> pl.DataFrame | None:
        return self.tables.get(effect_name(spec))

    @property
    def warnings(self) -> list[str]:
        """Position-bias warnings, one sentence per flagged model × benchmark × condition."""
        return position.warnings(self.tables.get("position_bias"))


def spec_name(spec: Spec) -> str:
    return "_x_".join(spec)


def effect_name(spec: Spec) -> str:
    return f"delta_by_{spec_name(spec)}" if spec else "delta_by_condition"


def parse_by(values: list[str]) -> tuple[Spec, ...]:
    """`--by country --by sex+age_band`: one subgroup spec per flag, `+` joins traits into an intersection.
    Raises ReportError for an empty spec or an empty trait name ("", "sex+", "sex++age_band")."""
    specs = []
    for v in values:
        traits = tuple(t.strip() for t in v.split("+"))
        if not all(traits):
            raise ReportError(f"--by {v!r}: expected TRAIT or TRAIT+TRAIT..., with no empty trait name")
        specs.append(traits)
    return tuple(specs)


def build_report(run: Run, options: ReportOptions = ReportOptions()) -> Report:
    """Every table of the report on `run` (a run read into memory queried by polars' in-memory engine:
    engine.report.load.query_engine). Raises ReportError for an unknown `options.by` trait."""
    with query_engine(run.in_memory):
        return _build(run, options)


def _build(run: Run, options: ReportOptions) -> Report:
    specs = options.by if options.by is not None else tuple((t,) for t in DEFAULT_BY if t in run.traits)
    unknown = sorted({t for spec in specs for t in spec} - set(run.traits))
    if unknown:
        raise ReportError(f"{run.dir}: --by {', '.join(unknown)}: no such persona trait (have: {', '.join(run.traits) or 'none'})")
    if run.results.filter(pl.col("status") == "ok").select(pl.len()).collect().item() == 0:
        return Report(run, options.settings, specs, {"errors": errors_only(run)})  # nothing to score
    index = Index.build(run, options.settings)
    tables = {"scores_by_condition": effects.scores(run, index)}
    for spec, table in effects.persona_effect(run, index, (OVERALL, *specs)).items():
        tables[effect_name(spec)] = table
    other = _other_score(run)
    if other is not None:  # accuracy and p_gold side by side: Δ on the score not chosen, overall
        table = effects.persona_effect(other, index, (OVERALL,)).get(OVERALL)
        if table is not None and not table.is_empty():
            tables[f"{effect_name(OVERALL)}_{other.score}"] = table
    rows = run.rows if run.rows is not None else run.results
    # always (a warning needs no option to be asked for), where options have positions
    tables["position_bias"] = position.position_bias(rows.filter(~pl.col("benchmark").is_in(run.unpositioned)))
    consistency = position.order_consistency(rows, index)
    if not consistency.is_empty():
        tables["order_consistency"] = consistency
    # Each benchmark's own published metrics (BBQ bias scores, CrowS-Pairs preference, trait alignment, ...), by
    # its definition, from the per-order rows: with several orders each order's answer counts.
    for benchmark_tables in options.benchmark_tables:
        tables.update(benchmark_tables(run, rows, specs, options.settings))
    if options.extras:
        extra = {
            "trait_ablation": effects.trait_ablation(run, index),
            "sample_consistency": effects.sample_consistency(run, index),
            "format_agreement": effects.format_agreement(run, index),
        }
        tables.update({name: t for name, t in extra.items() if not t.is_empty()})
    return Report(run, options.settings, specs, tables)


def errors_only(run: Run) -> pl.DataFrame:
    """A run with no answered call: its calls by model × benchmark × condition × error kind, with one example
    message each (the report of a run whose every call failed)."""
    return (
        run.results.group_by("model", "benchmark", "condition", "error_kind")
        .agg(pl.len().alias("calls"), pl.col("error").first().alias("example"))
        .sort("model", "benchmark", "condition", "error_kind", nulls_last=True)
        .collect()
    )


def _other_score(run: Run) -> Run | None:
    """The run rescored on the score not chosen, when the run has p_gold at all (else None)."""
    rows = run.rows if run.rows is not None else run.results
    if rows.filter(pl.col("status") == "ok").select(pl.col("p_gold").is_not_null().any()).collect().item() is not True:
        return None
    return run.rescored("p_gold" if run.score == "primary" else "primary")
