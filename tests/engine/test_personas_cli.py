"""The `personas` CLI (build, show, stats) and adding a survey and a trait by editing data only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import persona_builder.testing
from engine.personas_cli import app
from persona_builder.catalog import DEFAULT_CATALOG, load_catalog
from persona_builder.persona import load_personas
from persona_builder.render import render


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Synthetic WVS-7, joint and GSS files (persona_builder/testing.py: generated, never real respondents)."""
    return persona_builder.testing.write_all(tmp_path_factory.mktemp("surveys"))

runner = CliRunner()


def test_build_show_stats(files, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", "--wvs", str(files["wvs7"]), "--joint", str(files["joint"]),
                                 "--gss", str(files["gss"]), "--n", "120", "--seed", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "120 personas" in result.stdout
    assert "column 'Q1' has code 7" in result.stderr  # unknown codes are reported, the build goes on
    first = load_personas(out / "personas.parquet")[0]
    shown = runner.invoke(app, ["show", str(out), "--id", first.id, "--format", "prose", "--subset", "all"])
    assert shown.exit_code == 0 and shown.stdout.strip() == render(first)
    stats = runner.invoke(app, ["stats", str(out)])
    assert stats.exit_code == 0 and "120 personas" in stats.stdout and "max absolute share deviation" in stats.stdout


def test_errors_exit_2_with_a_message(files, tmp_path):
    none = runner.invoke(app, ["build", "--out", str(tmp_path / "o")])
    assert none.exit_code == 2 and "at least one survey file" in none.stderr
    wrong = runner.invoke(app, ["build", "--wvs", str(files["joint"]), "--out", str(tmp_path / "o")])
    assert wrong.exit_code == 2
    assert f"{files['joint']}: required column 'S007|D_INTERVIEW'" in wrong.stderr
    assert runner.invoke(app, ["stats", str(tmp_path)]).exit_code == 2
    out = tmp_path / "b"
    runner.invoke(app, ["build", "--gss", str(files["gss"]), "--n", "5", "--out", str(out)])
    missing = runner.invoke(app, ["show", str(out), "--id", "nobody"])
    assert missing.exit_code == 2 and "no persona with id 'nobody'" in missing.stderr
    bad_format = runner.invoke(app, ["show", str(out), "--id", load_personas(out / "personas.jsonl")[0].id, "--format", "xml"])
    assert bad_format.exit_code == 2 and "unknown persona format" in bad_format.stderr
    pid = load_personas(out / "personas.jsonl")[0].id
    for subset, message in (("nonsense", "expected all, demographic, values or -<trait>"), ("-nosuch", "nosuch: not a trait of persona"), ("all+nosuch", "nosuch: not a trait of persona")):
        shown = runner.invoke(app, ["show", str(out), "--id", pid, "--subset", subset])
        assert shown.exit_code == 2 and message in shown.stderr, shown.stderr
    (tmp_path / "afile").write_text("x")
    onto_a_file = runner.invoke(app, ["build", "--gss", str(files["gss"]), "--n", "5", "--out", str(tmp_path / "afile")])
    assert onto_a_file.exit_code == 2 and "is a file, expected a folder" in onto_a_file.stderr


EXTENSION = """
[surveys.afro]
name = "Afrobarometer R9"
formats = ["csv"]
id = ["RESPNO"]
weights = ["withinwt"]
missing = [-1, 8, 9, 98, 99]

[traits.country.sources.afro]
column = "COUNTRY_ISO"

[traits.sex.sources.afro]
column = "Q101"

[traits.age.sources.afro]
column = "Q1"

[traits.trust_police]
category = "values"
label = "Trust in the police"
question = "How much do you trust the police?"
prose = "You trust the police {answer}."
labels = "trust4"
sources = { afro = "Q43G", wvs7 = "Q69" }

[labelsets.trust4]
ordinal = true
0 = { label = "Not at all", prose = "not at all" }
1 = { label = "Just a little", prose = "just a little" }
2 = { label = "Somewhat", prose = "somewhat" }
3 = { label = "A lot", prose = "a lot" }
"""


def test_new_survey_and_trait_by_data_only(tmp_path):
    catalog_path = tmp_path / "catalog.toml"
    catalog_path.write_text(DEFAULT_CATALOG.read_text(encoding="utf-8") + EXTENSION, encoding="utf-8")
    survey_file = tmp_path / "afro.csv"
    pl.DataFrame({
        "RESPNO": [f"KEN{i:04d}" for i in range(1, 41)],
        "COUNTRY_ISO": [404, 566] * 20,
        "Q101": [1, 2] * 20,
        "Q1": [20 + i for i in range(40)],
        "Q43G": [0, 1, 2, 3, 9] * 8,
        "withinwt": [1.0] * 40,
    }).write_csv(survey_file)
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", "--input", f"afro={survey_file}", "--catalog", str(catalog_path),
                                 "--n", "30", "--max-missing", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    personas = load_personas(out / "personas.parquet")
    assert len(personas) == 30 and {p.source for p in personas} == {"Afrobarometer R9"}
    assert {p.answer("country") for p in personas} == {"Kenya", "Nigeria"}
    with_trust = [p for p in personas if p.answer("trust_police")]
    assert with_trust and all(p.traits["trust_police"].question == "How much do you trust the police?" for p in with_trust)
    assert load_catalog(catalog_path).traits["trust_police"].sources["wvs7"].layouts[0].parts[0].column == "Q69"
