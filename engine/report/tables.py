"""The paper's tables in spirit, as display frames of formatted strings, for the terminal and for Markdown:
Table 2 (baseline vs persona vs Δ per model), Tables 3-4 (score by country, by sex, per model), Table 5
(benchmark × country for one model), then trait ablation and sample/format consistency when the grid has them.

Every estimate carries its 95% interval; `*` marks a Δ whose Benjamini-Hochberg q < 0.05 and `†` a subgroup
with fewer personas than the minimum size (shown, not hidden).
"""

from __future__ import annotations

import math

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.console import print_wide
from engine.report.build import Report
from engine.report.effects import interval_note
from engine.report.position import display as position_display

SIGNIFICANT_Q = 0.05
SCORE_NAMES = {"primary": "the primary score (accuracy; TruthfulQA MC2: the true options' mass)", "p_gold": "p_gold (probability on the correct option)"}


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def ci(row: dict, name: str, signed: bool = False, tested: bool = False) -> str:
    text = _num(row.get(name), signed)
    if row.get(f"{name}_lo") is not None:
        text += f" [{_num(row[f'{name}_lo'], signed)}, {_num(row[f'{name}_hi'], signed)}]"
    if tested and (row.get("q_bh") or 1.0) < SIGNIFICANT_Q:
        text += "*"
    return text


def _level(row: dict, traits: list[str]) -> str:
    return " × ".join(str(row[t]) for t in traits) + (" †" if row.get("small") else "")


def primary_condition(tables: dict[str, pl.DataFrame], preferred: list[str]) -> str | None:
    """The persona condition the per-subgroup tables show: the first full-persona one the grid lists."""
    effect = tables.get("delta_by_condition")
    if effect is None or effect.is_empty():
        return None
    present = effect["condition"].unique(maintain_order=True).to_list()
    return next((c for c in preferred if c in present), present[0])


def display_tables(tables: dict[str, pl.DataFrame], primary: str | None = None, model: str | None = None, score: str = "primary") -> list[tuple[str, pl.DataFrame]]:
    """The printed tables; `score` names what delta_by_condition is on (the other score's Δ, when the run has
    it, follows as Table 2b)."""
    primary = primary or primary_condition(tables, [])
    shown: list[tuple[str, pl.DataFrame]] = []
    effect = tables.get("delta_by_condition")
    if effect is not None and not effect.is_empty():
        shown.append((f"Table 2 · persona effect per model on {SCORE_NAMES[score]}: baseline vs persona vs Δ (delta by condition){direction_note(effect)}", _effect_table(effect)))
        for other in SCORE_NAMES:
            table = tables.get(f"delta_by_condition_{other}")
            if other != score and table is not None:
                shown.append((f"Table 2b · the same on {SCORE_NAMES[other]} (delta by condition_{other}){direction_note(table)}", _effect_table(table)))
    elif "scores_by_condition" in tables:
        shown.append(("Scores by condition (no baseline and persona pair to compare in this run)", _scores_table(tables["scores_by_condition"])))
    for trait, label in (("country", "Table 3"), ("sex", "Table 4")):
        table = tables.get(f"delta_by_{trait}")
        if table is not None and not table.is_empty():
            shown.append((f"{label} · score and Δ per model, condition {primary} (delta by {trait}){direction_note(table)}", _by_trait(table, trait, primary)))
    country = tables.get("delta_by_country")
    if country is not None and not country.is_empty():
        model = model or country["model"][0]
        shown.append((f"Table 5 · persona score, benchmark × country, model {model}, condition {primary}{direction_note(country)}", _benchmark_by_country(country, model, primary)))
    shown += _traits_tables(tables)
    if "trait_ablation" in tables:
        shown.append(("Trait ablation: what the left-out traits add (full − partial persona, paired)", _ablation_table(tables["trait_ablation"])))
    if "sample_consistency" in tables:
        shown.append(("Consistency across samples: pass@k (unbiased) and answer agreement", _consistency_table(tables["sample_consistency"])))
    if "format_agreement" in tables:
        shown.append(("Answer agreement across persona render formats", _format_table(tables["format_agreement"])))
    if "errors" in tables:  # build_report's errors-only report: no call was answered
        shown.append(("No call was answered: errors by model, benchmark, condition and kind", tables["errors"]))
    if "order_consistency" in tables:
        shown.append(("Order consistency: share of questions answered with the same option content in every option order", _order_table(tables["order_consistency"])))
    bias = tables.get("position_bias")
    if bias is not None and not bias.is_empty():
        shown_bias = position_display(bias)
        flag = " (⚠: see warnings)" if (shown_bias["flag"] == "⚠").any() else ""
        shown.append((f"Position bias: answers and gold by option position, χ² test of answers against gold{flag}", shown_bias))
    return shown


def _order_table(table: pl.DataFrame) -> pl.DataFrame:
    rows = [{"model": r["model"], "benchmark": r["benchmark"], "condition": r["condition"], "units": str(r["n"]),
             "orders": _num(r["orders"]), "consistency": ci(r, "consistency")} for r in table.iter_rows(named=True)]
    return _drop_benchmark(pl.DataFrame(rows), table)


def _bench(row: dict) -> str:
    """A benchmark's name as shown, marked ↓ where a lower score is the better one (see DIRECTION_NOTE)."""
    return row["benchmark"] + (" ↓" if row.get("higher_is_better") is False else "")


DIRECTION_NOTE = "↓: lower is better (e.g. CrowS-Pairs scores choosing the stereotype): there a positive Δ is a worse score"


def direction_note(table: pl.DataFrame) -> str:
    """DIRECTION_NOTE in brackets when a benchmark of `table` has a lower-is-better score, else ""."""
    lower = "higher_is_better" in table.columns and table["higher_is_better"].eq(False).any()
    return f" [{DIRECTION_NOTE}]" if lower else ""


def _single_benchmark(frame: pl.DataFrame) -> bool:
    return frame["benchmark"].n_unique() == 1


def _effect_table(effect: pl.DataFrame) -> pl.DataFrame:
    rows = [
        {
            "model": r["model"],
            "benchmark": _bench(r),
            "condition": r["condition"],
            "n": str(r["n"]),
            "personas": str(r["personas"]) + (" †" if r["small"] else ""),
            "baseline": ci(r, "baseline"),
            "persona": ci(r, "persona"),
            "Δ": ci(r, "delta", signed=True, tested=True),
            "p": _num(r["p"]),
            "invalid b→p": f"{_num(r['inv_base'])}→{_num(r['inv_persona'])}",
        }
        for r in effect.iter_rows(named=True)
    ]
    return _drop_benchmark(pl.DataFrame(rows), effect)


def _scores_table(scores: pl.DataFrame) -> pl.DataFrame:
    rows = [
        {"model": r["model"], "benchmark": _bench(r), "condition": r["condition"], "n": str(r["n"]),
         "score": ci(r, "score"), "invalid": _num(r["invalid"]), "errors": str(r["errors"])}
        for r in scores.iter_rows(named=True)
    ]
    return _drop_benchmark(pl.DataFrame(rows), scores)


def _by_trait(table: pl.DataFrame, trait: str, condition: str | None) -> pl.DataFrame:
    """One row per (benchmark,) level; per model a persona-score column and a Δ column."""
    table = table.filter(pl.col("condition") == condition)
    keys = ["benchmark", trait] if not _single_benchmark(table) else [trait]
    out: dict[tuple, dict[str, str]] = {}
    for r in table.iter_rows(named=True):
        row = out.setdefault(tuple(r[k] for k in keys), {**{k: _bench(r) if k == "benchmark" else str(r[k]) for k in keys}})
        row[trait] = _level(r, [trait])
        row[f"{r['model']} persona"] = ci(r, "persona")
        row[f"{r['model']} Δ"] = ci(r, "delta", signed=True, tested=True)
    return pl.DataFrame(list(out.values()))


def _benchmark_by_country(table: pl.DataFrame, model: str, condition: str | None) -> pl.DataFrame:
    table = table.filter((pl.col("model") == model) & (pl.col("condition") == condition))
    out: dict[str, dict[str, str]] = {}
    for r in table.iter_rows(named=True):
        row = out.setdefault(r["country"], {"country": _level(r, ["country"])})
        row[_bench(r)] = ci(r, "persona")
    return pl.DataFrame(list(out.values()))


def _ablation_table(table: pl.DataFrame) -> pl.DataFrame:
    rows = [
        {"model": r["model"], "benchmark": r["benchmark"], "condition": r["condition"], "left out": r["removed"],
         "partial": ci(r, "score"), "full": ci(r, "reference_score"), "effect": ci(r, "effect", signed=True, tested=True),
         "p": _num(r["p"])}
        for r in table.iter_rows(named=True)
    ]
    return _drop_benchmark(pl.DataFrame(rows), table)


def _consistency_table(table: pl.DataFrame) -> pl.DataFrame:
    passes = [c for c in table.columns if c.startswith("pass@") and not c.endswith(("_lo", "_hi"))]
    rows = [
        {"model": r["model"], "benchmark": r["benchmark"], "condition": r["condition"], "k": str(r["k"]),
         **{c: ci(r, c) for c in passes}, "agreement": ci(r, "agreement")}
        for r in table.iter_rows(named=True)
    ]
    return _drop_benchmark(pl.DataFrame(rows), table)


def _format_table(table: pl.DataFrame) -> pl.DataFrame:
    rows = [{"model": r["model"], "benchmark": r["benchmark"], "formats": r["condition"], "n": str(r["n"]), "agreement": ci(r, "agreement")}
            for r in table.iter_rows(named=True)]
    return _drop_benchmark(pl.DataFrame(rows), table)


def _traits_tables(tables: dict[str, pl.DataFrame]) -> list[tuple[str, pl.DataFrame]]:
    """Trait inference (engine.benchmark_tables): per trait, each model and condition beside the population priors."""
    shown = []
    for name, table in tables.items():
        if not (name.startswith("traits") and name.endswith("_by_target")):
            continue
        rows = [
            {"target": r["target"] + ("" if r["ordinal"] else " (nominal)"), "model": r["model"], "condition": r["condition"],
             "n": str(r["n"]) + (" †" if r["small"] else ""), "accuracy": ci(r, "accuracy"), "ordinal score": ci(r, "ordinal_score"),
             "lift over best prior": ci(r, "lift", signed=True), "alignment": ci(r, "alignment"), "invalid": _num(r["invalid"])}
            for r in table.iter_rows(named=True)
        ]
        title = f"Trait inference ({name}): models beside population priors; lift = model − best prior on the ordinal score (accuracy when nominal)"
        shown.append((title, pl.DataFrame(rows)))
    return shown


def _drop_benchmark(display: pl.DataFrame, source: pl.DataFrame) -> pl.DataFrame:
    return display.drop("benchmark") if _single_benchmark(source) else display


def print_tables(console: Console, shown: list[tuple[str, pl.DataFrame]]) -> None:
    """Each (title, frame) as a table on `console`; piped, at its natural width (engine.console.print_wide), so an
    interval stays on one line, and on the console given, so a reader going away does what that console does
    (the CLI's: the exit code kept)."""
    for title, frame in shown:
        table = Table(title=Text(title), title_justify="left")
        for name in frame.columns:
            table.add_column(Text(name), justify="left" if name in ("model", "benchmark", "condition", "country", "sex") else "right")
        for row in frame.iter_rows():
            # Text, not str: a value is printed as it is, never read as console markup ("[b]" in a country name)
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        print_wide(console, table)


def markdown_table(frame: pl.DataFrame) -> str:
    def cell(v: object) -> str:
        return "" if v is None else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def report_tables(report: Report) -> list[tuple[str, pl.DataFrame]]:
    full = [c.name for c in report.run.persona_conditions if c.traits == "all"]
    return display_tables(report.tables, primary_condition(report.tables, full), score=report.run.score)


def render_markdown(report: Report) -> str:
    s = report.settings
    lines = [
        f"# Persona-effect report: {report.run.name}",
        "",
        f"Δ = score(persona) − score(baseline `{report.run.baseline}`), paired on model × benchmark × question × sample. "
        f"{interval_note(s)} `*`: q < 0.05. "
        f"`†`: fewer than {s.min_size} personas (shown, not hidden). Invalid answers score 0; their rates are reported beside "
        "the scores (baseline → persona). Errored calls are not scored. "
        f"Scores are {SCORE_NAMES[report.run.score]}; a question shown in several option orders scores the mean over its orders.",
        "",
    ]
    if report.warnings or report.run.notes:
        lines += ["## Warnings", "", *(f"- position bias: {w}" for w in report.warnings), *(f"- {n}" for n in report.run.notes), ""]
    for title, frame in report_tables(report):
        lines += [f"## {title}", "", markdown_table(frame), ""]
    lines += ["## Files", "", *(f"- `{name}.csv`, `{name}.parquet`" for name in report.tables), "- `report.html`", ""]
    return "\n".join(lines)
