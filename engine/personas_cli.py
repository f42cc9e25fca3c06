"""`mtpa-engine personas ...`: build a persona set from survey files, show one persona, summarise a build.

A shell over the persona_builder library, as engine.cache_cli is over the cache tools: persona_builder itself
imports nothing of the engine (personas are where the flow starts)."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path

import click
import orjson

from engine.cli_group import CommandGroup, WholeNumber
from engine.cli_group import fail as _fail
from persona_builder.build import DEFAULT_MAX_MISSING, DEFAULT_N, JSONL, PARQUET, REPORT, build, parse_years
from persona_builder.catalog import load_catalog
from persona_builder.persona import PersonaFileError, iter_personas
from persona_builder.render import FORMATS, render, subset_problem

app = CommandGroup("personas", help="Build survey-respondent personas (WVS-7, EVS/WVS joint, GSS), show and summarise them.")


def _persona_file(directory: Path) -> Path:
    for name in (PARQUET, JSONL):
        if (directory / name).is_file():
            return directory / name
    raise PersonaFileError(f"{directory}: no {PARQUET} or {JSONL} (run `personas build` first)")


@app.command("build")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder for personas.parquet, personas.jsonl, report.json.")
@click.option("--wvs", type=click.Path(path_type=Path), help="WVS-7 cross-national CSV.")
@click.option("--joint", type=click.Path(path_type=Path), help="EVS/WVS joint 2017-2022 file (.csv, .dta or .sav).")
@click.option("--gss", type=click.Path(path_type=Path), help="GSS file (.dta, .sav or Data Explorer .csv).")
@click.option("--input", "inputs", multiple=True, help="SURVEY=FILE for any survey in the catalog (repeatable).")
@click.option("--n", type=WholeNumber(), default=DEFAULT_N, help="Number of personas.")
@click.option("--seed", type=WholeNumber(), default=0, help="Sampling seed.")
@click.option("--max-missing", type=float, default=DEFAULT_MAX_MISSING, help="Drop a survey's trait above this missing share.")
@click.option("--weights/--no-weights", default=False, help="Use survey weights for strata shares and draws (rows without a weight are dropped).")
@click.option("--years", help="Interview years to keep: 2018 or 2016-2022.")
@click.option("--catalog", type=click.Path(path_type=Path), help="Trait catalog (default: the packaged one).")
def build_cmd(out: Path, wvs: Path | None, joint: Path | None, gss: Path | None, inputs: tuple[str, ...], n: int, seed: int,
              max_missing: float, weights: bool, years: str | None, catalog: Path | None) -> None:
    """Read the survey files, clean, stratify and write the persona set."""
    files = {k: v for k, v in (("wvs7", wvs), ("joint", joint), ("gss", gss)) if v is not None}
    for item in inputs:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise _fail(f"--input expects SURVEY=FILE, got {item!r}")
        files[key] = Path(path)
    if not files:
        raise _fail("give at least one survey file: --wvs, --joint, --gss or --input SURVEY=FILE")
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out}: is a file, expected a folder")
    try:
        span = parse_years(years) if years is not None else None
        report = build(files, out, n=n, seed=seed, max_missing=max_missing, weighted=weights, years=span,
                       catalog=load_catalog(catalog))
    except PersonaFileError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # the output folder: not creatable or writable
        raise _fail(f"{exc.filename or out}: {exc.strerror or exc}") from None
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    for u in report["unknown_codes"]:
        print(f"warning: {u['file']}: column '{u['column']}' has code {u['value']} ({u['count']} rows), "
              f"not in the catalog for trait '{u['trait']}'; read as missing", file=sys.stderr)
    sampling = report["sampling"]
    if sampling["n_sampled"] < n:
        print(f"warning: --n {n}: {sampling['n_sampled']} personas drawn, fewer than asked (the respondents left after cleaning)", file=sys.stderr)
    print(f"{sampling['n_sampled']} personas from {report['pool_size']} respondents -> {out}")
    if span:
        print(f"years {span[0]}-{span[1]}: kept {report['years']['kept']}, dropped {report['years']['dropped']}")
    if weights:
        print("weights: " + "; ".join(f"{s} {w['column']} ({w['dropped']} rows without a weight dropped)"
                                      for s, w in report["weights"].items()))
    for title, key in (("sparse (over --max-missing)", "dropped_traits"), ("column not in the file", "absent_traits"),
                       ("no source in the catalog", "no_source_traits")):
        named = {s: t for s, t in report[key].items() if t}
        print(f"traits left out, {title}: " + ("; ".join(f"{s}: {', '.join(t)}" for s, t in named.items()) or "none"))
    print(f"duplicates dropped: {report['duplicates_dropped']}; max stratum share deviation: {sampling['max_abs_deviation']:.6f}")


@app.command("show")
@click.argument("directory", type=click.Path(path_type=Path), help="A build output folder (or a persona file).")
@click.option("--id", "persona_id", required=True, help="Persona id.")
@click.option("--format", "fmt", default="prose", help=f"One of {', '.join(FORMATS)}.")
@click.option("--subset", default="all", help="all, demographic, values or -TRAIT (leave one out), optionally +TRAIT for a trait shown only on request (all+year).")
def show_cmd(directory: Path, persona_id: str, fmt: str, subset: str) -> None:
    """Print one persona rendered as the model sees it."""
    try:
        path = directory if directory.is_file() else _persona_file(directory)
        persona = next((p for p in iter_personas(path) if p.id == persona_id), None)
        if persona is None:
            raise PersonaFileError(f"{path}: no persona with id '{persona_id}'")
        if (wrong := subset_problem(subset)) is not None:
            raise _fail(f"--subset: {wrong}")
        base, *asked = subset.split("+")
        unknown = [t for t in (base[1:] if base.startswith("-") else None, *asked) if t is not None and t not in persona.traits]
        if unknown:
            raise _fail(f"--subset {subset}: {', '.join(unknown)}: not a trait of persona {persona_id} (has: {', '.join(persona.traits)})")
        print(render(persona, fmt, subset))
    except (PersonaFileError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _counts(title: str, values: list, total: int, top: int = 12) -> str:
    counts = Counter(v for v in values if v is not None).most_common(top)
    return f"{title}: " + ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in counts)


@app.command("stats")
@click.argument("directory", type=click.Path(path_type=Path), help="A build output folder.")
def stats_cmd(directory: Path) -> None:
    """Summarise a persona set: sources, countries, regions, sex, age bands, years, trait coverage, strata fit."""
    try:
        personas = list(iter_personas(_persona_file(directory)))
        catalog = load_catalog()
    except PersonaFileError as exc:
        raise _fail(str(exc)) from None
    total = len(personas)
    print(f"{total} personas in {directory}")
    ages = sorted(int(a) for p in personas if (a := p.answer("age")) and a.isdigit())
    print(_counts("source", [p.source for p in personas], total))
    print(_counts("sex", [p.answer("sex") for p in personas], total))
    print(_counts("country", [p.answer("country") for p in personas], total))
    print(_counts("region", [catalog.regions.get(p.answer("country"), "Other") for p in personas], total))
    parquet = directory / PARQUET
    if parquet.is_file():  # the census region or other subregion lives in the build's Parquet only
        import polars as pl

        sub = pl.read_parquet(parquet, columns=["subregion"])["subregion"].to_list()
        if any(sub):
            print(_counts("subregion", sub, total))
    if ages:
        bands = [catalog.age_band(a) for a in ages]
        order = {b: i for i, b in enumerate(dict.fromkeys(catalog.age_band(a) for a in range(0, 130)))}
        counts = Counter(bands)
        print("age band: " + ", ".join(f"{b} {counts[b]} ({counts[b] / total:.1%})" for b in sorted(counts, key=order.get)))
        print(f"age: min {ages[0]}, median {statistics.median(ages):g}, max {ages[-1]}")
    years = Counter(y for p in personas if (y := p.answer("year")))
    if years:
        print("year: " + ", ".join(f"{y} {c}" for y, c in sorted(years.items())))
    coverage = Counter(k for p in personas for k in p.traits)
    print("trait coverage: " + ", ".join(f"{k} {v / total:.0%}" for k, v in coverage.most_common()))
    report_path = directory / REPORT
    if report_path.is_file():
        report = orjson.loads(report_path.read_bytes())
        sampling = report["sampling"]
        print(f"strata: {len(sampling['strata'])}, max absolute share deviation {sampling['max_abs_deviation']:.6f}, "
              f"seed {sampling['seed']}, weighted {sampling['weighted']}")
        print(f"duplicates dropped: {report['duplicates_dropped']}, unknown codes: {len(report['unknown_codes'])}")
