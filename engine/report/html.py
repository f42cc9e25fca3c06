"""The report as one self-contained HTML file: inline CSS and SVG only, so it opens offline and can be
mailed or archived as is. Charts: forest plots of Δ by subgroup, country bar charts, a model × subgroup
heat map of Δ, the trait-ablation chart; then every display table."""

from __future__ import annotations

from html import escape

import polars as pl

from engine.report import svg
from engine.report.aggregate import Spec
from engine.report.build import Report
from engine.report.load import Run
from engine.report.effects import interval_note
from engine.report.tables import SCORE_NAMES, SIGNIFICANT_Q, primary_condition, report_tables

# The trait-inference heat map's subgroup: the first of these with more than one level (a one-country survey
# such as the GSS has one country, and one world region).
HEAT_TRAITS = ("country", "region", "age_band")


def heat_spec(run: Run) -> Spec | None:
    """The first of HEAT_TRAITS on which the personas differ (the trait-inference tables add it to their specs)."""
    for trait in HEAT_TRAITS:
        if trait in run.personas.columns and run.personas[trait].drop_nulls().n_unique() > 1:
            return (trait,)
    return None

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.note{color:#555;max-width:900px} figure{margin:12px 0 20px} svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0 18px;font-size:12.5px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left} ul.warn{color:#8a4b00;background:#fff6e5;padding:8px 8px 8px 28px}
"""


def _point(row: dict, label: str, name: str = "delta") -> svg.Point:
    return svg.Point(
        label + (" †" if row.get("small") else ""),
        row.get(name),
        row.get(f"{name}_lo"),
        row.get(f"{name}_hi"),
        strong=(row.get("q_bh") or 1.0) < SIGNIFICANT_Q,
        faint=bool(row.get("small")),
    )


def _label(row: dict, parts: list[str]) -> str:
    return " · ".join(str(row[p]) for p in parts)


def _figures(report: Report, primary: str | None) -> list[str]:
    figures: list[str] = []
    overall = report.effect()
    if overall is not None and not overall.is_empty():
        many_bench = overall["benchmark"].n_unique() > 1
        keys = ["model", "benchmark", "condition"] if many_bench else ["model", "condition"]
        points = [_point(r, _label(r, keys)) for r in overall.iter_rows(named=True)]
        figures.append(svg.forest(points, "Persona effect Δ per model and condition (95% CI)"))
    for spec in report.specs:
        table = report.effect(spec)
        if table is None or table.is_empty():
            continue
        table = table.filter(pl.col("condition") == primary)
        many_bench = table["benchmark"].n_unique() > 1
        keys = ["model", *(["benchmark"] if many_bench else []), *spec]
        points = [_point(r, _label(r, keys)) for r in table.sort(*spec, "model").iter_rows(named=True)]
        figures.append(svg.forest(points, f"Δ by {' × '.join(spec)}, condition {primary} (95% CI; filled red: BH q < 0.05; hollow: small)"))
    country = report.effect(("country",))
    if country is not None and not country.is_empty():
        figures += _country_bars(country.filter(pl.col("condition") == primary), primary)
    shown = next((s for s in report.specs if s == ("country",)), report.specs[0] if report.specs else None)
    if shown is not None and report.effect(shown) is not None:
        figures.append(_heatmap(report.effect(shown).filter(pl.col("condition") == primary), shown, primary))
    figures += _position_bars(report.tables.get("position_bias"))
    ablation = report.tables.get("trait_ablation")
    if ablation is not None:
        keys = ["model", "benchmark"] if ablation["benchmark"].n_unique() > 1 else ["model"]
        points = [_point(r, f"{_label(r, keys)} · without {r['removed']}", "effect") for r in ablation.iter_rows(named=True)]
        figures.append(svg.forest(points, "Trait ablation: score(full persona) − score(partial), per left-out trait (95% CI)"))
    figures += _traits_heatmaps(report.tables)
    return figures


def _country_bars(table: pl.DataFrame, primary: str | None) -> list[str]:
    out = []
    for bench in table["benchmark"].unique(maintain_order=True):
        part = table.filter(pl.col("benchmark") == bench)
        countries = sorted(part["country"].unique())
        series: dict[str, list[svg.Point]] = {}
        marker: dict[str, list[float | None]] = {}
        for model in part["model"].unique(maintain_order=True):
            rows = {r["country"]: r for r in part.filter(pl.col("model") == model).iter_rows(named=True)}
            series[model] = [_point(rows[c], c, "persona") if c in rows else svg.Point(c, None) for c in countries]
            marker[model] = [rows[c]["baseline"] if c in rows else None for c in countries]
        labels = [c + (" †" if any(p.faint for p in (s[i] for s in series.values())) else "") for i, c in enumerate(countries)]
        out.append(svg.bars(labels, series, f"{bench}: persona score by country, condition {primary} (95% CI; tick = paired baseline)", marker))
    return out


def _position_bars(table: pl.DataFrame | None) -> list[str]:
    """Per model × benchmark: each condition's share of answers at every option position, and the gold's."""
    if table is None or table.is_empty():
        return []
    out = []
    for part in table.partition_by(["model", "benchmark"], maintain_order=True):
        positions = sorted(set(part["position"]), key=lambda p: (len(p), p))
        series: dict[str, list[svg.Point]] = {}
        for cond in part["condition"].unique(maintain_order=True):
            share = {r["position"]: r["answer_share"] for r in part.filter(pl.col("condition") == cond).iter_rows(named=True)}
            series[f"answers · {cond}"] = [svg.Point(p, share.get(p, 0.0)) for p in positions]
        first = part.filter(pl.col("condition") == part["condition"][0])
        gold = {r["position"]: r["gold_share"] for r in first.iter_rows(named=True)}
        series["gold"] = [svg.Point(p, gold.get(p, 0.0)) for p in positions]
        title = f"Position bias, {part['model'][0]} · {part['benchmark'][0]}: share of cells answered at each option position, and the gold's share"
        out.append(svg.bars(positions, series, title))
    return out


def _heatmap(table: pl.DataFrame, spec: tuple[str, ...], primary: str | None) -> str:
    many_bench = table["benchmark"].n_unique() > 1
    table = table.with_columns(pl.concat_str([pl.col(c) for c in spec], separator=" × ").alias("_level"))
    table = table.with_columns((pl.col("model") + pl.lit(" · ") + pl.col("benchmark")).alias("_row") if many_bench else pl.col("model").alias("_row"))
    rows = table["_row"].unique(maintain_order=True).to_list()
    cols = sorted(table["_level"].unique().to_list())
    lookup = {(r["_row"], r["_level"]): r["delta"] for r in table.iter_rows(named=True)}
    values = [[lookup.get((r, c)) for c in cols] for r in rows]
    return svg.heatmap(rows, cols, values, f"Δ, model × {' × '.join(spec)}, condition {primary}")


def _traits_heatmaps(tables: dict[str, pl.DataFrame]) -> list[str]:
    """Trait inference: alignment with the real answers, target × the first of country, region, age band on which
    the personas differ, per model and condition."""
    out = []
    for name in [n for n in tables if n.startswith("traits") and n.endswith("_by_target")]:
        found = [(t, tables[f"{name}_x_{t}"]) for t in HEAT_TRAITS if f"{name}_x_{t}" in tables]
        trait, table = next(((t, f) for t, f in found if f[t].n_unique() > 1), (None, None))
        if trait is None or table is None:
            continue
        for (model, condition), part in table.filter(~pl.col("model").str.starts_with("prior:")).group_by("model", "condition", maintain_order=True):
            targets = part["target"].unique(maintain_order=True).to_list()
            levels = sorted(part[trait].unique().to_list())
            lookup = {(r["target"], r[trait]): r["alignment"] for r in part.iter_rows(named=True)}
            values = [[lookup.get((t, c)) for c in levels] for t in targets]
            out.append(svg.heatmap(targets, levels, values, f"{name}: alignment (1 = the real answer distribution), target × {trait}, {model}, {condition}"))
    return out


def _table_html(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if v is None else str(v))}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    full = [c.name for c in report.run.persona_conditions if c.traits == "all"]
    primary = primary_condition(report.tables, full)
    s = report.settings
    note = (
        f"Δ = score(persona) − score(baseline <code>{escape(str(report.run.baseline))}</code>), paired on model × benchmark × question × sample. "
        f"{escape(interval_note(s))} * = q &lt; 0.05; † = fewer than {s.min_size} personas (shown, not hidden). "
        "Invalid answers score 0 and are reported as their own rate; errored calls are not scored. "
        f"Scores are {escape(SCORE_NAMES[report.run.score])}; a question shown in several option orders scores the mean over its orders."
    )
    parts = [f"<h1>Persona-effect report: {escape(report.run.name)}</h1>", f'<p class="note">{note}</p>']
    if report.warnings or report.run.notes:
        items = "".join(f"<li>{escape(w)}</li>" for w in (*(f"position bias: {w}" for w in report.warnings), *report.run.notes))
        parts.append(f'<h2>Warnings</h2><ul class="warn">{items}</ul>')
    parts.append("<h2>Charts</h2>")
    parts += [f"<figure>{fig}</figure>" for fig in _figures(report, primary)]
    for title, frame in report_tables(report):
        parts += [f"<h2>{escape(title)}</h2>", _table_html(frame)]
    files = "".join(f"<li><code>{escape(n)}.csv</code>, <code>{escape(n)}.parquet</code></li>" for n in report.tables)
    parts.append(f"<h2>Files</h2><ul>{files}</ul>")
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(report.run.name)} · persona-effect report</title><style>{CSS}</style></head><body>{"".join(parts)}</body></html>\n'
