"""Readers and harmonization for every supported format, missing codes, unknown codes and bad input."""

from __future__ import annotations

import polars as pl
import pytest

from persona_builder.catalog import load_catalog
from persona_builder.harmonize import harmonize
from persona_builder.persona import PersonaFileError

CATALOG = load_catalog()
MISSING_WORDS = ("don't know", "don´t know", "no answer", "not asked", "missing", "inapplicable", "not applicable", "refused")


def _read(path, survey):
    return harmonize(path, CATALOG.surveys[survey], CATALOG)


def _all_answers(frame: pl.DataFrame) -> set[str]:
    return {v for k in CATALOG.traits if k in frame.columns for v in frame[k].drop_nulls().to_list()}


def _assert_clean(table):
    answers = _all_answers(table.frame)
    assert not [a for a in answers if any(w in a.lower() for w in MISSING_WORDS)]
    assert not [a for a in answers if a.lstrip("-").replace(".", "").isdigit() and a.startswith("-")]
    assert table.frame["id"].null_count() == 0


@pytest.mark.parametrize(
    ("survey", "name", "kwargs"),
    [
        ("wvs7", "wvs.csv", {}),
        ("wvs7", "wvs5.csv", {"version": 5}),
        ("joint", "joint.csv", {}),
        ("joint", "joint_lower.csv", {"lowercase": True}),
        ("joint", "joint.dta", {}),
        ("joint", "joint.sav", {}),
        ("gss", "gss.dta", {}),
        ("gss", "gss2024.dta", {"layout": "2024"}),
        ("gss", "gss.sav", {}),
        ("gss", "gss_explorer.csv", {}),
    ],
)
def test_every_format_reads_to_labels(gen, tmp_path, survey, name, kwargs):
    writer = {"wvs7": gen.write_wvs7_csv, "joint": gen.write_joint, "gss": gen.write_gss}[survey]
    table = _read(writer(tmp_path / name, **kwargs), survey)
    _assert_clean(table)
    frame = table.frame
    assert set(frame["sex"].drop_nulls()) == {"Female", "Male"}
    assert all(a.isdigit() for a in frame["age"].drop_nulls())
    assert frame["country"].null_count() == 0
    assert set(frame["importance_family" if survey != "gss" else "happiness"].drop_nulls()) <= set(
        CATALOG.traits["importance_family" if survey != "gss" else "happiness"].answers(survey)
    )


def test_gss_formats_agree_and_extended_missing_is_null(gen, tmp_path):
    dta = _read(gen.write_gss(tmp_path / "g.dta"), "gss").frame
    sav = _read(gen.write_gss(tmp_path / "g.sav"), "gss").frame
    csv = _read(gen.write_gss(tmp_path / "g.csv"), "gss").frame
    assert dta.equals(sav) and dta.equals(csv)
    # Ballot-driven .i (inapplicable) on two thirds of `trust`: nulls, not text.
    assert 0.55 < dta["trust"].null_count() / dta.height < 0.8
    assert dta["id"][0] == "gss-2022-1"


def test_gss_region_layouts_give_census_regions(gen, tmp_path):
    old = _read(gen.write_gss(tmp_path / "old.dta", layout="2022"), "gss").frame
    new = _read(gen.write_gss(tmp_path / "new.dta", layout="2024"), "gss").frame
    assert old["subregion"].to_list() == new["subregion"].to_list()
    assert set(old["subregion"]) == {"Northeast", "Midwest", "South", "West"}


def test_joint_income_comes_from_the_study_specific_column(gen, tmp_path):
    path = gen.write_joint(tmp_path / "j.csv")
    raw = pl.read_csv(path)
    frame = _read(path, "joint").frame
    evs_with_income = (raw["study"] == 1) & (raw["X047E_EVS5"] > 0)
    assert frame.filter(evs_with_income)["income"].null_count() == 0
    assert raw.filter(raw["study"] == 1)["X047_WVS7"].unique().to_list() == [-4]


def test_not_asked_country_block_is_null(gen, tmp_path):
    frame = _read(gen.write_wvs7_csv(tmp_path / "w.csv"), "wvs7").frame
    assert frame.filter(pl.col("country") == "China")["left_right"].null_count() == frame.filter(pl.col("country") == "China").height


def test_unknown_codes_are_reported_not_raised(gen, tmp_path):
    path = gen.write_wvs7_csv(tmp_path / "w.csv")
    table = _read(path, "wvs7")
    assert {"survey": "wvs7", "file": str(path), "column": "Q1", "trait": "importance_family", "value": 7, "count": 1} in table.unknown_codes
    assert table.frame["importance_family"][5] is None


def test_joint_binary_items_in_the_other_coding_are_reported(gen, tmp_path):
    table = _read(gen.write_joint(tmp_path / "j.csv", binary=(1, 2)), "joint")
    flagged = {(u["column"], u["value"]) for u in table.unknown_codes}
    assert ("A029", 2) in flagged and ("A124_06", 2) in flagged


def test_missing_file_and_wrong_type(gen, tmp_path):
    with pytest.raises(PersonaFileError, match="nope.csv: file not found"):
        _read(tmp_path / "nope.csv", "wvs7")
    bad = tmp_path / "survey.xlsx"
    bad.write_bytes(b"x")
    with pytest.raises(PersonaFileError, match=r"survey.xlsx: unsupported file type '.xlsx'"):
        _read(bad, "wvs7")
    dta = gen.write_gss(tmp_path / "g.dta")
    with pytest.raises(PersonaFileError, match=r"g.dta: a .dta file, but WVS-7 is read from csv files"):
        _read(dta, "wvs7")
    corrupt = tmp_path / "broken.dta"
    corrupt.write_bytes(b"not stata at all")
    with pytest.raises(PersonaFileError, match="broken.dta: cannot read as a dta file"):
        _read(corrupt, "gss")


def test_wrong_survey_names_file_and_missing_column(gen, tmp_path):
    gss_csv = gen.write_gss(tmp_path / "gss.csv")
    with pytest.raises(PersonaFileError, match=r"gss.csv: required column 'S007\|D_INTERVIEW' \(respondent id\) not found; is this a WVS-7 file\?"):
        _read(gss_csv, "wvs7")
    wvs = pl.read_csv(gen.write_wvs7_csv(tmp_path / "w.csv"), infer_schema=False).drop("Q262")
    wvs.write_csv(tmp_path / "no_age.csv")
    with pytest.raises(PersonaFileError, match=r"no_age.csv: required column 'Q262' \(trait 'age'\) not found"):
        _read(tmp_path / "no_age.csv", "wvs7")


def test_non_numeric_cell_names_file_column_and_value(gen, tmp_path):
    frame = pl.read_csv(gen.write_wvs7_csv(tmp_path / "w.csv"), infer_schema=False)
    frame[4, "Q29"] = "Agree strongly"
    frame.write_csv(tmp_path / "labels.csv")
    with pytest.raises(PersonaFileError, match=r"labels.csv: column 'Q29', data row 5: value 'Agree strongly' is not a numeric code"):
        _read(tmp_path / "labels.csv", "wvs7")


def test_semicolon_file_gets_a_hint(gen, tmp_path):
    path = tmp_path / "wv6.csv"
    path.write_text("V1;V2;V3\n1;2;3\n")
    with pytest.raises(PersonaFileError, match="semicolon-delimited"):
        _read(path, "wvs7")
