"""Cleaning, stratified sampling, outputs and their round trip through load_personas."""

from __future__ import annotations

import os

import orjson
import polars as pl
import pytest

from persona_builder.build import build
from persona_builder.persona import PersonaFileError, load_personas
from persona_builder.sample import allocate


def test_outputs_round_trip_through_load_personas(built):
    out, report = built
    from_parquet = load_personas(out / "personas.parquet")
    from_jsonl = load_personas(out / "personas.jsonl")
    assert len(from_parquet) == 300 == report["sampling"]["n_sampled"]
    assert from_parquet == from_jsonl
    assert all({"region", "age_band"} <= p.strata.keys() for p in from_parquet), "the columnar reader keeps the strata"
    frame = pl.read_parquet(out / "personas.parquet")
    assert frame.columns[:6] == ["id", "source", "region", "subregion", "age_band", "weight"]
    assert {"country", "sex", "age", "income", "importance_family"} <= set(frame.columns)
    assert frame["id"].is_unique().all()
    assert set(frame["source"]) == {"WVS-7", "EVS/WVS", "GSS"}
    assert orjson.loads((out / "report.json").read_bytes()) == orjson.loads(orjson.dumps(report))
    assert not [p for p in out.iterdir() if p.name.startswith(".build-")]


def test_each_persona_is_one_respondent_of_one_survey(built, files):
    out, _ = built
    raw = pl.read_csv(files["wvs7"], infer_schema=False)
    for p in load_personas(out / "personas.jsonl"):
        assert p.id.split("-")[0] == {"WVS-7": "wvs7", "EVS/WVS": "joint", "GSS": "gss"}[p.source]
        if p.source == "WVS-7":
            row = raw.filter(pl.col("S007") == p.id.split("-")[1].split("#")[0])
            assert row.height >= 1 and p.answer("age") == row["Q262"][0]
        if p.source == "GSS":
            assert p.answer("country") == "United States" and "importance_family" not in p.traits


def test_duplicates_dropped_and_colliding_ids_kept_apart(gen, tmp_path):
    path = gen.write_wvs7_csv(tmp_path / "wvs5.csv", version=5)
    report = build({"wvs7": path}, tmp_path / "out", n=10_000, seed=0)
    assert report["duplicates_dropped"] == 1  # the row exported twice
    assert report["id_collisions_renamed"] == 1  # two respondents sharing one D_INTERVIEW
    ids = [p.id for p in load_personas(tmp_path / "out" / "personas.jsonl")]
    assert len(ids) == len(set(ids))
    assert sum(i.endswith("#2") for i in ids) == 1


def test_overlap_and_incomplete_respondents(built):
    _, report = built
    assert report["overlap_dropped"]["joint"] > 0  # joint WVS rows: the WVS-7 file supplies them
    assert report["incomplete_dropped"]["sex"] >= 1  # incl. the Australian sex = -5 case


def test_sparse_traits_are_dropped_per_survey(files, tmp_path):
    strict = build({"gss": files["gss"]}, tmp_path / "a", n=100, seed=0)
    assert "trust" in strict["dropped_traits"]["gss"]
    assert strict["missing_rates"]["gss"]["trust"] > 0.15
    # Not rated and not "sparse": the GSS has no such question; reported apart, by name.
    assert "importance_family" not in strict["missing_rates"]["gss"]
    assert "importance_family" in strict["no_source_traits"]["gss"]
    assert all(p.answer("trust") is None for p in load_personas(tmp_path / "a" / "personas.jsonl"))
    lenient = build({"gss": files["gss"]}, tmp_path / "b", n=100, seed=0, max_missing=0.9)
    assert "trust" not in lenient["dropped_traits"]["gss"]
    assert any(p.answer("trust") for p in load_personas(tmp_path / "b" / "personas.jsonl"))


def test_allocation_is_largest_remainder_and_capped():
    shares = {("a",): 0.5, ("b",): 0.3, ("c",): 0.2}
    assert allocate(shares, {("a",): 100, ("b",): 100, ("c",): 100}, 7) == {("a",): 4, ("b",): 2, ("c",): 1}
    capped = allocate(shares, {("a",): 2, ("b",): 100, ("c",): 100}, 10)
    assert capped[("a",)] == 2 and sum(capped.values()) == 10


@pytest.mark.parametrize("weighted", [False, True])
def test_strata_shares_preserved(files, tmp_path, weighted):
    report = build(files, tmp_path / "out", n=400, seed=3, weighted=weighted)["sampling"]
    assert report["n_sampled"] == 400
    assert report["max_abs_deviation"] <= 1 / 400
    assert sum(r["sampled"] for r in report["strata"]) == 400
    assert abs(sum(r["share_before"] for r in report["strata"]) - 1) < 1e-9
    frame = pl.read_parquet(tmp_path / "out" / "personas.parquet")
    counts = frame.group_by("region", "age_band", "sex").len()
    for r in report["strata"]:
        got = counts.filter((pl.col("region") == r["region"]) & (pl.col("age_band") == r["age_band"]) & (pl.col("sex") == r["sex"]))
        assert (got["len"][0] if got.height else 0) == r["sampled"]


def test_seeded_determinism(files, tmp_path):
    build(files, tmp_path / "a", n=200, seed=7)
    build(files, tmp_path / "b", n=200, seed=7)
    build(files, tmp_path / "c", n=200, seed=8)
    a, b, c = ((tmp_path / d / "personas.jsonl").read_bytes() for d in "abc")
    assert a == b and a != c


def test_failed_build_leaves_output_untouched(files, tmp_path):
    out = tmp_path / "out"
    build(files, out, n=50, seed=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(PersonaFileError):
        build({**files, "gss": tmp_path / "missing.dta"}, out, n=50, seed=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(os.listdir(out)) == ["personas.jsonl", "personas.parquet", "report.json"]


def test_build_argument_errors(files, tmp_path):
    with pytest.raises(PersonaFileError, match="no survey file given"):
        build({}, tmp_path / "o")
    with pytest.raises(PersonaFileError, match="no survey 'afro' in the catalog"):
        build({"afro": files["gss"]}, tmp_path / "o")


def test_a_columnar_file_with_a_stratum_that_is_no_label_is_one_clear_error(built, tmp_path):
    out, _ = built
    path = tmp_path / "personas.parquet"
    frame = pl.read_parquet(out / "personas.parquet")
    meta = pl.read_parquet_metadata(out / "personas.parquet")
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(7).otherwise(None).alias("age_band")).write_parquet(path, metadata=meta)
    with pytest.raises(PersonaFileError, match=r"personas.parquet: row 3: 'strata' must be an object of region, subregion, age_band -> label"):
        load_personas(path)
