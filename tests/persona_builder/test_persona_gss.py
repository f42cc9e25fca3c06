"""Real GSS coding (issue 13): census region by release, row-wise fallbacks, the interview year, checked
weights, files that are not what their name says, GSS wording, top codes, dropped traits by reason, stats.

Real respondents come from data/gss1618_slice.csv (300 rows of the 2016/2018 GSS, see data/README.md); the
expected counts below were worked out from that file's codes by hand: `region` (9 census divisions) holds
1:17 2:32 3:52 4:18 5:62 6:20 7:32 8:26 9:41, so Northeast 49 (1-2), Midwest 70 (3-4), South 114 (5-7),
West 67 (8-9); 170 rows are from 2016 and 130 from 2018; age is missing (-99/-98) for 2016 ids 379 and
2125 and 2018 id 1562.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from persona_builder.build import build
from persona_builder.catalog import load_catalog
from engine.personas_cli import app
from persona_builder.harmonize import harmonize
from persona_builder.persona import PersonaFileError, iter_personas, load_personas
from persona_builder.render import render

CATALOG = load_catalog()
SLICE = Path(__file__).with_name("data") / "gss1618_slice.csv"
# ../shared beside the repository (CI), or beside the folder of worktrees (development).
REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (REPO.parent / "shared", REPO.parent.parent / "shared") if p.is_dir()), REPO.parent / "shared") / "data" / "surveys" / "gss"
REGIONS = {"Northeast": 49, "Midwest": 70, "South": 114, "West": 67}
DIVISION_TO_REGION = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4}
runner = CliRunner()


def _slice(tmp_path: Path, name: str = "gss.csv", **columns: pl.Expr) -> Path:
    frame = pl.read_csv(SLICE)
    if columns:
        frame = frame.with_columns(**columns)
    path = tmp_path / name
    frame.write_csv(path)
    return path


def _without(tmp_path: Path, *drop: str, name: str = "gss.csv") -> Path:
    path = tmp_path / name
    pl.read_csv(SLICE).drop(*drop).write_csv(path)
    return path


def _table(path: Path):
    return harmonize(path, CATALOG.surveys["gss"], CATALOG)


def _regions(table) -> dict[str, int]:
    return dict(table.frame["subregion"].value_counts().iter_rows())


# 1. Census region by release -------------------------------------------------------------------------------

def test_region_as_nine_divisions_reads_as_census_regions_without_warning():
    table = _table(SLICE)
    assert _regions(table) == REGIONS
    assert table.warnings == []


def test_current_release_region_of_four_is_read_as_regions_with_a_warning(tmp_path):
    # The 1972-2024 release recodes `region` to 4 regions; a CSV with only that column must not be read as
    # divisions 1-4 (which would make everyone Northeast or Midwest).
    four = pl.col("region").replace_strict(DIVISION_TO_REGION)
    table = _table(_slice(tmp_path, region=four))
    assert _regions(table) == REGIONS
    assert len(table.warnings) == 1
    assert "column 'region' holds codes [1, 2, 3, 4]" in table.warnings[0]
    assert "read as 'us_census_region'" in table.warnings[0]


def test_region_7222_falls_back_to_region_row_by_row(tmp_path):
    # 1972-2024 layout: divisions in region_7222, missing (-100, .i) for the newest year, 4 regions in region.
    path = _slice(
        tmp_path,
        region_7222=pl.when(pl.col("year") == 2018).then(-100).otherwise(pl.col("region")),
        region=pl.col("region").replace_strict(DIVISION_TO_REGION),
    )
    table = _table(path)
    assert _regions(table) == REGIONS
    assert table.column_rows["subregion"] == {"region_7222": 170, "region": 130}
    assert table.warnings == []
    report = build({"gss": path}, tmp_path / "out", n=50, seed=0)
    assert report["columns_used"]["gss"]["subregion"] == {"region_7222": 170, "region": 130}
    assert report["trait_rows"]["gss"]["sex"] == 300 and report["trait_rows"]["gss"]["age"] == 297


# 3. Year filter and the interview year as a trait --------------------------------------------------------

def test_years_filter_is_recorded_and_every_persona_carries_its_year(tmp_path):
    report = build({"gss": SLICE}, tmp_path / "out", n=500, seed=0, years=(2018, 2018))
    assert report["years"] == {"first": 2018, "last": 2018, "kept": {"gss": 130}, "dropped": {"gss": 170}}
    personas = load_personas(tmp_path / "out" / "personas.jsonl")
    assert len(personas) == 129  # 130 interviewed in 2018, one without an age
    assert {p.answer("year") for p in personas} == {"2018"}
    wide = build({"gss": SLICE}, tmp_path / "wide", n=500, seed=0, years=(2016, 2022))
    assert wide["years"]["kept"] == {"gss": 300} and wide["years"]["dropped"] == {"gss": 0}
    assert build({"gss": SLICE}, tmp_path / "all", n=10, seed=0)["years"] is None


def test_year_is_rendered_only_when_asked(tmp_path):
    build({"gss": SLICE}, tmp_path / "out", n=500, seed=0)
    persona = next(p for p in load_personas(tmp_path / "out" / "personas.jsonl") if p.id == "gss-2016-1")
    assert persona.traits["year"].category == "demographic"
    for fmt in ("prose", "json", "bullets"):
        assert "2016" not in render(persona, fmt)
        assert "Year of interview" not in render(persona, fmt, "demographic")
    assert "You were interviewed in 2016." in render(persona, "prose", "all+year")
    assert "- Year of interview: 2016" in render(persona, "bullets", "demographic+year")
    assert "- Year of interview: 2016" not in render(persona, "bullets", "-sex")


def test_years_on_wvs_waves_and_bad_ranges(gen, tmp_path):
    wvs = gen.write_wvs7_csv(tmp_path / "wvs.csv")
    expected = int((pl.read_csv(wvs)["A_YEAR"] == 2019).sum())
    report = build({"wvs7": wvs}, tmp_path / "out", n=1000, seed=0, years=(2019, 2019))
    assert report["years"]["kept"] == {"wvs7": expected}
    assert {p.answer("year") for p in load_personas(tmp_path / "out" / "personas.jsonl")} == {"2019"}
    bad = runner.invoke(app, ["build", "--gss", str(SLICE), "--years", "2022-2016", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "ends before it starts" in bad.stderr
    words = runner.invoke(app, ["build", "--gss", str(SLICE), "--years", "recent", "--out", str(tmp_path / "x")])
    assert words.exit_code == 2 and "expected a year (2018) or a range (2016-2022), got 'recent'" in words.stderr
    no_year = _without(tmp_path, "year", name="noyear.csv")
    with pytest.raises(PersonaFileError, match="required column 'year'"):  # the GSS id needs the year
        build({"gss": no_year}, tmp_path / "y", years=(2018, 2018))
    none_in_range = runner.invoke(app, ["build", "--gss", str(SLICE), "--years", "1990", "--out", str(tmp_path / "z")])
    assert none_in_range.exit_code == 2 and "no respondent interviewed in 1990-1990" in none_in_range.stderr
    assert not (tmp_path / "z").exists()


# 4. Weights ---------------------------------------------------------------------------------------------

def test_weight_column_is_named_and_variants_are_known(tmp_path):
    report = build({"gss": SLICE}, tmp_path / "a", n=50, seed=0, weighted=True)
    assert report["weights"] == {"gss": {"column": "wtssps", "rows_missing_weight": 0, "dropped": 0}}
    only_nr = _without(tmp_path, "wtssps", "wtssall", name="nr.csv")
    report = build({"gss": only_nr}, tmp_path / "b", n=50, seed=0, weighted=True)
    assert report["weights"]["gss"]["column"] == "wtssnr" and report["sampling"]["weighted"] is True


def test_weights_missing_for_some_rows_are_dropped_and_counted(tmp_path):
    # wtssall is missing for all 2021-2024 rows of the real release; here for the 130 rows of 2018.
    path = tmp_path / "wtssall.csv"
    pl.read_csv(SLICE).drop("wtssps", "wtssnr").with_columns(
        wtssall=pl.when(pl.col("year") == 2018).then(-100.0).otherwise(pl.col("wtssall"))
    ).write_csv(path)
    report = build({"gss": path}, tmp_path / "out", n=500, seed=0, weighted=True)
    assert report["weights"]["gss"] == {"column": "wtssall", "rows_missing_weight": 130, "dropped": 130}
    assert report["pool_size"] == 168  # 170 rows of 2016, two without an age
    unweighted = build({"gss": path}, tmp_path / "u", n=500, seed=0)
    assert unweighted["weights"]["gss"] == {"column": "wtssall", "rows_missing_weight": 130, "dropped": 0}
    assert unweighted["pool_size"] == 297


def test_weights_without_a_weight_column_exit_2(tmp_path):
    path = _without(tmp_path, "wtssps", "wtssall", "wtssnr", name="noweight.csv")
    result = runner.invoke(app, ["build", "--gss", str(path), "--weights", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}: --weights: no weight column in this file (looked for wtssps, wtssnrps, wtssall, wtssnr)"
    )
    assert not (tmp_path / "out").exists()
    unweighted = runner.invoke(app, ["build", "--gss", str(path), "--n", "20", "--out", str(tmp_path / "ok")])
    assert unweighted.exit_code == 0, unweighted.output


# 5. Files that are not what their name says --------------------------------------------------------------

def _gzip(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip.compress(src.read_bytes()))


def _zip(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(dst, "w") as zf:
        zf.write(src, "gss.csv")


def _parquet(src: Path, dst: Path) -> None:
    pl.read_csv(src).write_parquet(dst)


def _stata(src: Path, dst: Path) -> None:
    import pyreadstat

    pyreadstat.write_dta(pl.read_csv(src), str(dst))


@pytest.mark.parametrize(("convert", "what"), [
    (_gzip, "a gzip-compressed file (unpack it first)"),
    (_zip, "a zip archive (unzip it first)"),
    (_parquet, "a Parquet file"),
    (_stata, "a Stata .dta file"),
])
def test_binary_file_named_csv_is_one_line_exit_2(tmp_path, convert, what):
    path = tmp_path / "gss.csv"
    convert(SLICE, path)
    result = runner.invoke(app, ["build", "--gss", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}: named .csv but looks like {what}, not CSV text\n"
    assert not (tmp_path / "out").exists()


def test_csv_cut_off_mid_row_names_the_line(tmp_path):
    text = SLICE.read_bytes()
    lines = text.split(b"\n")
    cut = b"\n".join(lines[:101]) + b"\n" + lines[101][:20]  # header + 100 rows + 20 bytes of row 101
    path = tmp_path / "cut.csv"
    path.write_bytes(cut)
    fields = len(lines[101][:20].split(b","))
    result = runner.invoke(app, ["build", "--gss", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:102: the last row has {fields} fields, the header 26: the file looks cut off (download it again)\n"
    )
    assert not (tmp_path / "out").exists()
    whole = tmp_path / "whole.csv"
    whole.write_bytes(b"\n".join(lines[:101]))  # complete rows, no final newline: fine
    assert runner.invoke(app, ["build", "--gss", str(whole), "--n", "10", "--out", str(tmp_path / "ok")]).exit_code == 0


# 6 + 7. GSS wording in bullets and JSON; the age top code ------------------------------------------------

@pytest.fixture(scope="module")
def slice_personas(tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("slice")
    build({"gss": SLICE}, out, n=500, seed=0)
    return {p.id: p for p in load_personas(out / "personas.jsonl")}


def test_bullets_and_json_use_the_gss_wording(slice_personas):
    persona = slice_personas["gss-2016-104"]  # god 6, cappun 2, polviews 4, relig 2 in the file
    bullets = render(persona, "bullets").splitlines()
    assert "- Belief in God: Knows God exists, without doubt" in bullets
    assert "- Death penalty for murder: Oppose" in bullets
    assert "- Political views: Moderate" in bullets
    assert "- Religious preference: Roman Catholic" in bullets
    assert not [b for b in bullets if b.startswith(("- Importance of God", "- Death penalty is justifiable", "- Left-right"))]
    respondent = orjson.loads(render(persona, "json"))["respondent"]
    assert respondent["Belief in God"] == "Knows God exists, without doubt"
    assert respondent["Death penalty for murder"] == "Oppose"


def test_age_89_is_rendered_as_89_or_older(slice_personas):
    persona = slice_personas["gss-2016-104"]  # age 89, sex 2
    assert persona.answer("age") == "89"  # the record keeps the code: strata and age bands stay numeric
    assert render(persona).startswith("You are answering as a woman aged 89 or older, interviewed in the United States")
    assert "- Age: 89 or older" in render(persona, "bullets").splitlines()
    assert orjson.loads(render(persona, "json"))["respondent"]["Age"] == "89 or older"
    younger = slice_personas["gss-2016-1"]  # age 47, sex 1
    assert render(younger).startswith("You are answering as a 47-year-old man, interviewed in the United States")


# 8. Dropped traits, three reasons ----------------------------------------------------------------------

def test_dropped_traits_are_reported_by_reason(tmp_path):
    path = _without(tmp_path, "god", "thnkself")
    report = build({"gss": path}, tmp_path / "out", n=50, seed=0)
    assert report["absent_traits"] == {"gss": ["child_independence", "importance_god"]}
    assert report["no_source_traits"]["gss"] == [
        "urban_rural", "importance_family", "importance_friends", "importance_leisure", "importance_politics",
        "importance_work", "importance_religion", "neighbours_immigrants", "neighbours_homosexuals",
        "university_boys", "jobs_men_priority", "life_satisfaction",
    ]
    # Split-ballot items, asked of a third to two thirds of respondents: over 15% missing.
    assert report["dropped_traits"] == {"gss": [
        "child_obedience", "men_political_leaders", "preschool_child_suffers", "trust",
        "justifiable_homosexuality", "justifiable_abortion",
    ]}
    assert "importance_god" not in report["missing_rates"]["gss"]
    result = runner.invoke(app, ["build", "--gss", str(path), "--n", "50", "--out", str(tmp_path / "cli")])
    assert "traits left out, column not in the file: gss: child_independence, importance_god" in result.stdout
    assert "traits left out, no source in the catalog: gss: urban_rural, importance_family" in result.stdout
    assert "traits left out, sparse (over --max-missing): gss: child_obedience, men_political_leaders" in result.stdout


# 9. personas stats -----------------------------------------------------------------------------------------

def test_stats_show_age_bands_regions_and_years(tmp_path):
    out = tmp_path / "out"
    build({"gss": SLICE}, out, n=500, seed=0)
    personas = load_personas(out / "personas.jsonl")
    assert len(personas) == 297
    stats = runner.invoke(app, ["stats", str(out)])
    assert stats.exit_code == 0, stats.output
    lines = stats.stdout.splitlines()
    assert "region: Northern America 297 (100.0%)" in lines
    # 300 rows less the three without an age: 2016 ids 379 (region 5) and 2125 (region 3), 2018 id 1562 (region 6).
    assert "subregion: South 112 (37.7%), Midwest 69 (23.2%), West 67 (22.6%), Northeast 49 (16.5%)" in lines
    assert "year: 2016 168, 2018 129" in lines
    band = next(line for line in lines if line.startswith("age band: "))
    assert band.startswith("age band: <25 ") and " 65+ " in band
    counts = [int(part.split()[1]) for part in band.removeprefix("age band: ").split(", ")]
    assert sum(counts) == 297


# The trait scale and ordinal flag (for trait inference, issue 15) ---------------------------------------

def test_build_writes_scales_and_ordinal_without_changing_the_prompt(tmp_path, slice_personas):
    out = tmp_path / "out"
    build({"gss": SLICE}, out, n=500, seed=0)
    jsonl = {p.id: p for p in iter_personas(out / "personas.jsonl")}
    parquet = {p.id: p for p in iter_personas(out / "personas.parquet")}
    assert jsonl == parquet
    persona = jsonl["gss-2016-104"]
    assert persona.traits["left_right"].scale == (
        "Extremely liberal", "Liberal", "Slightly liberal", "Moderate", "Slightly conservative", "Conservative",
        "Extremely conservative",
    )
    assert persona.traits["left_right"].ordinal is True
    assert persona.traits["religion"].ordinal is False and persona.traits["religion"].scale[:2] == ("Protestant", "Roman Catholic")
    assert persona.traits["education"].ordinal is True and len(persona.traits["education"].scale) == 5
    assert persona.traits["religious_attendance"].scale[0] == "Never" and persona.traits["religious_attendance"].ordinal
    assert persona.traits["marital_status"].ordinal is False
    assert persona.traits["age"].scale == () and persona.traits["age"].ordinal is None
    record = orjson.loads((out / "personas.jsonl").read_bytes().splitlines()[0])
    assert "scale" not in record["traits"]["age"] and record["traits"]["sex"]["scale"] == ["Male", "Female"]
    # The prompt is the same with or without scale and ordinal.
    from persona_builder.persona import Persona, Trait

    bare = Persona(persona.id, persona.source, {k: Trait(t.question, t.answer, t.category) for k, t in persona.traits.items()})
    for fmt in ("prose", "json", "bullets"):
        assert render(bare, fmt) == render(persona, fmt)


def test_catalog_ordinal_is_required_for_every_labelset(tmp_path):
    from persona_builder.catalog import CatalogError, DEFAULT_CATALOG

    text = DEFAULT_CATALOG.read_text(encoding="utf-8").replace("[labelsets.agree2]\nordinal = true\n", "[labelsets.agree2]\n")
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=r"labelsets\.agree2\.ordinal: expected true \(ordered answers\) or false"):
        load_catalog(path)


# The three real files agree (shared extract; the slice above covers CI without it) ------------------------

@pytest.mark.skipif(not (SHARED / "gss1618.dta").is_file(), reason="../shared/data/surveys/gss not present")
def test_real_dta_sav_csv_give_the_same_personas(tmp_path):
    outs = {}
    for fmt in ("dta", "sav", "csv"):
        build({"gss": SHARED / f"gss1618.{fmt}"}, tmp_path / fmt, n=200, seed=0)
        outs[fmt] = (tmp_path / fmt / "personas.jsonl").read_bytes()
    assert outs["dta"] == outs["sav"] == outs["csv"]
    table = _table(SHARED / "gss1618.dta")
    # The extract's own region counts (SOURCE.md): 9 divisions, read as 4 regions.
    assert _regions(table) == {"Northeast": 299 + 545, "Midwest": 890 + 318, "South": 1063 + 368 + 574, "West": 418 + 740}
    assert table.warnings == []


def test_undecodable_header_is_one_line_exit_2(tmp_path):
    path = tmp_path / "gss.csv"
    path.write_bytes(b"year,\x81\x8d\x8f,sex\n2016,1,1\n")  # bytes neither UTF-8 nor Windows-1252 decode
    result = runner.invoke(app, ["build", "--gss", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}:1: the header is neither UTF-8 nor Windows-1252 text; is this a CSV file?\n"
