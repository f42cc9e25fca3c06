"""Synthetic survey files in the exact public schemas, for tests, the bench and the shipped example personas.

The real WVS, EVS/WVS and GSS microdata may not be redistributed, so every file here is generated: random
respondents written with the real headers, codes and quirks (see ../shared/docs/survey-file-schemas.md).
Shipped in the package (as engine.testing is) so benches and code built on the builder need not import tests/:

* WVS-7 CSV: upper-case Q-numbered header, negative missing codes -1..-5, a country whose whole block is
  -4 (not asked), yes/no items coded 1/2, D_INTERVIEW that repeats, one "-4.0" float artifact, a quoted
  text cell containing a comma, one code the codebook does not have, one Australian respondent with sex -5.
* EVS/WVS joint CSV (mixed-case v5 header or lower-case v4 header), .dta and .sav: EVS rows (study 1) carry
  -4 in X047_WVS7 and WVS rows (study 2) -4 in X047E_EVS5; binary items coded 0/1 by default.
* GSS: Stata .dta with extended missing values (.d .i .n .s) and value labels, SPSS .sav and Data Explorer
  CSV with numeric codes -100..-40; ballot-driven "inapplicable" on attitude items; `region` as 9 divisions
  (2022-era) or 4 regions plus region_7222 (2024-era).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyreadstat

WVS_COUNTRIES = {356: "IND", 840: "USA", 276: "DEU", 156: "CHN", 76: "BRA", 566: "NGA", 392: "JPN", 818: "EGY", 36: "AUS"}
EVS_COUNTRIES = {276: "DE", 250: "FR", 380: "IT", 616: "PL", 752: "SE"}
JOINT_WVS_COUNTRIES = {840: "US", 356: "IN", 76: "BR", 392: "JP", 276: "DE"}

# (WVS-7 column, joint column, answer codes) for the coded items both files carry.
_ITEMS = [
    ("Q1", "A001", range(1, 5)), ("Q2", "A002", range(1, 5)), ("Q3", "A003", range(1, 5)),
    ("Q4", "A004", range(1, 5)), ("Q5", "A005", range(1, 5)), ("Q6", "A006", range(1, 5)),
    ("Q8", "A029", "binary"), ("Q17", "A042", "binary"), ("Q21", "A124_06", "binary"), ("Q22", "A124_09", "binary"),
    ("Q28", "D061", range(1, 5)), ("Q29", "D059", range(1, 5)), ("Q30", "D060", range(1, 5)),
    ("Q33", "C001_01", range(1, 6)), ("Q46", "A008", range(1, 5)), ("Q49", "A170", range(1, 11)),
    ("Q57", "A165", range(1, 3)), ("Q164", "F063", range(1, 11)), ("Q182", "F118", range(1, 11)),
    ("Q184", "F120", range(1, 11)), ("Q195", "F144_02", range(1, 11)), ("Q240", "E033", range(1, 11)),
    ("Q263", "G027A", range(1, 3)), ("Q273", "X007", range(1, 7)), ("Q275", "X025A_01", range(0, 9)),
    ("Q279", "X028", range(1, 9)), ("Q289", "F025", range(0, 10)), ("Q260", "X001", range(1, 3)),
]
_WVS_MISSING = (-1, -2, -5)


def _pick(rng: np.random.Generator, n: int, codes, missing=_WVS_MISSING, rate: float = 0.03) -> np.ndarray:
    values = rng.choice(np.array(list(codes)), size=n)
    holes = rng.random(n) < rate
    values[holes] = rng.choice(np.array(missing), size=int(holes.sum()))
    return values


def _ages(rng: np.random.Generator, n: int, lo: int = 16, hi: int = 94) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=n)


def write_wvs7_csv(path: Path, n: int = 240, seed: int = 1, version: int = 6) -> Path:
    """WVS-7 cross-national CSV (v6 has S007; v5 identifies respondents by the non-unique D_INTERVIEW only)."""
    rng = np.random.default_rng(seed)
    countries = np.array(sorted(WVS_COUNTRIES))
    country = np.sort(rng.choice(countries, size=n))
    serial = np.arange(n) + 1
    year = rng.choice(np.array([2018, 2019, 2020]), size=n)
    age = _ages(rng, n)
    cols: dict[str, object] = {
        "version": [f"{version}-0-0 (2024-04-30)"] * n,
        "doi": ["doi.org/10.14281/18241.24"] * n,
        "A_WAVE": np.full(n, 7), "A_YEAR": year, "A_STUDY": np.full(n, 2),
        "B_COUNTRY": country, "B_COUNTRY_ALPHA": [WVS_COUNTRIES[c] for c in country],
        "D_INTERVIEW": country * 100000 + 7 * 10000 + serial,
    }
    if version >= 6:
        cols["S007"] = country * 1000000 + 720000 + serial
    cols |= {
        "H_URBRURAL": _pick(rng, n, (1, 2), missing=(-5,), rate=0.01),
        "W_WEIGHT": np.round(rng.uniform(0.5, 1.6, size=n), 9), "S018": np.round(rng.uniform(0.5, 1.6, size=n), 7),
    }
    for wvs, _, codes in _ITEMS:
        cols[wvs] = _pick(rng, n, (1, 2) if codes == "binary" else codes)
    cols["Q33_3"] = np.select([cols["Q33"] <= 2, cols["Q33"] >= 4], [1, 2], 3)
    cols["Q171"] = _pick(rng, n, range(1, 8))
    cols["Q261"] = year - age
    cols["Q262"] = age
    cols["Q288"] = _pick(rng, n, range(1, 11), rate=0.05)
    cols["Partyname"] = rng.choice(np.array(["Missing, Not available", "Party A", "Don´t know"]), size=n)
    frame = pl.DataFrame({k: (list(v) if isinstance(v, list) else v) for k, v in cols.items()})
    # China did not field the left-right item: the whole country block is -4.
    frame = frame.with_columns(pl.when(pl.col("B_COUNTRY") == 156).then(-4).otherwise(pl.col("Q240")).alias("Q240"))
    frame = frame.with_columns(pl.col("W_WEIGHT").cast(pl.String), pl.col("Q46").cast(pl.String))
    first_au = frame["B_COUNTRY"].to_list().index(36)
    frame[first_au, "Q260"] = -5  # Australia's "other" sex is -5
    frame[3, "Q46"] = "-4.0"  # float artifact of re-saved files
    frame[5, "Q1"] = 7  # a code the codebook does not have
    # An id collision between two different respondents (the Uruguay 858069901 case) and a row exported twice.
    frame[9, "D_INTERVIEW"] = frame[8, "D_INTERVIEW"]
    frame = pl.concat([frame, frame[10:11]])
    frame.write_csv(path)
    return path


def _joint_frame(n: int, seed: int, binary: tuple[int, int], extra_columns: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    study = np.sort(rng.choice(np.array([1, 2]), size=n))  # EVS rows first, as in the file
    evs_c, wvs_c = np.array(sorted(EVS_COUNTRIES)), np.array(sorted(JOINT_WVS_COUNTRIES))
    country = np.where(study == 1, rng.choice(evs_c, size=n), rng.choice(wvs_c, size=n))
    alpha = {**EVS_COUNTRIES, **JOINT_WVS_COUNTRIES}
    age = _ages(rng, n, 18, 90)
    year = np.where(study == 1, 2018, 2019)
    cols: dict[str, object] = {
        "study": study, "wave": np.where(study == 1, 5, 7), "uniqid": np.arange(n) + 10_000_001,
        "cntry": country, "cntry_AN": [alpha[c] for c in country], "year": year,
        "gwght": np.round(rng.uniform(0.4, 2.0, size=n), 6), "pwght": np.round(rng.uniform(0.1, 5.0, size=n), 6),
        "wght_eq1000": np.round(rng.uniform(0.4, 2.0, size=n), 6), "lnge_iso": ["en"] * n,
    }
    for _, joint, codes in _ITEMS:
        cols[joint] = _pick(rng, n, binary if codes == "binary" else codes)
    cols["C001"] = np.select([cols["C001_01"] <= 2, cols["C001_01"] >= 4], [1, 2], 3)
    cols["F028"] = _pick(rng, n, range(1, 9))
    cols["X002"] = year - age
    cols["X003"] = age
    cols["X025R"] = _pick(rng, n, range(1, 4))
    income = _pick(rng, n, range(1, 11), rate=0.05)
    cols["X047_WVS7"] = np.where(study == 2, income, -4)
    cols["X047E_EVS5"] = np.where(study == 1, income, -4)
    for i in range(extra_columns):  # other questionnaire items, only there to make the file wide
        cols[f"E{100 + i:03d}"] = _pick(rng, n, range(1, 5))
    return pl.DataFrame({k: (list(v) if isinstance(v, list) else v) for k, v in cols.items()})


def write_joint(path: Path, n: int = 240, seed: int = 2, lowercase: bool = False,
                binary: tuple[int, int] = (0, 1), extra_columns: int = 0) -> Path:
    """EVS/WVS joint 2017-2022 file as .csv, .dta or .sav (by suffix); lowercase=True gives the v4 CSV header."""
    frame = _joint_frame(n, seed, binary, extra_columns)
    if lowercase:
        frame = frame.rename({c: c.lower() for c in frame.columns})
    suffix = Path(path).suffix
    if suffix == ".csv":
        frame.write_csv(path)
    elif suffix == ".dta":
        pyreadstat.write_dta(frame.drop("cntry_AN", "lnge_iso"), str(path))
    else:
        missing = {c: [{"lo": -5, "hi": -1}] for c in frame.columns if frame[c].dtype.is_integer()}
        pyreadstat.write_sav(frame.drop("cntry_AN", "lnge_iso"), str(path), missing_ranges=missing)
    return path


# GSS variables: name -> (codes, share "inapplicable" because the item was not on the respondent's ballot).
_GSS_ITEMS = {
    "sex": (range(1, 3), 0.0), "degree": (range(0, 5), 0.0), "born": (range(1, 3), 0.0),
    "relig": (range(1, 14), 0.0), "income16": (range(1, 27), 0.0), "marital": (range(1, 6), 0.0),
    "wrkstat": (range(1, 9), 0.0), "race": (range(1, 4), 0.0),
    "thnkself": (range(1, 6), 0.34), "obey": (range(1, 6), 0.34), "fepol": (range(1, 3), 0.66),
    "fepresch": (range(1, 5), 0.34), "trust": (range(1, 4), 0.66), "happy": (range(1, 4), 0.0),
    "god": (range(1, 7), 0.34), "attend": (range(0, 9), 0.0), "polviews": (range(1, 8), 0.0),
    "homosex": (range(1, 6), 0.34), "abany": (range(1, 3), 0.66), "cappun": (range(1, 3), 0.0),
}
GSS_LABELS = {"sex": {1: "male", 2: "female"}, "happy": {1: "very happy", 2: "pretty happy", 3: "not too happy"},
              "age": {89: "89 or older"}, "born": {1: "yes", 2: "no"}}
# Data Explorer's numeric stand-ins for the Stata extended missing letters.
GSS_NUMERIC_MISSING = {"i": -100, "n": -99, "d": -98, "s": -97}


_DIVISION_REGION = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4}  # census division -> region


def _gss_columns(n: int, seed: int, layout: str) -> dict[str, list]:
    """Column -> values, where a missing value is its Stata letter ('d', 'i', 'n', 's')."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {"year": [2022] * n, "id": list(range(1, n + 1)),
                             "wtssps": list(np.round(rng.uniform(0.3, 3.0, size=n), 6))}
    ages = _ages(rng, n, 18, 89)
    cols["age"] = [int(a) if r > 0.05 else "n" for a, r in zip(ages, rng.random(n))]
    division = rng.integers(1, 10, size=n)
    if layout == "2024":
        cols["region"] = [_DIVISION_REGION[int(d)] for d in division]
        cols["region_7222"] = [int(d) for d in division]
    else:
        cols["region"] = [int(d) for d in division]
    for name, (codes, iap) in _GSS_ITEMS.items():
        values = rng.choice(np.array(list(codes)), size=n)
        r = rng.random(n)
        cols[name] = ["i" if x < iap else rng.choice(["d", "n", "s"]) if x > 0.98 else int(v) for v, x in zip(values, r)]
    cols["sex"][0] = "s"
    cols["happy"][1] = 4  # a code the codebook does not have
    return cols


def write_gss(path: Path, n: int = 200, seed: int = 3, layout: str = "2022") -> Path:
    """GSS as Stata .dta (extended missing), SPSS .sav or Data Explorer CSV (numeric codes), by suffix."""
    cols = _gss_columns(n, seed, layout)
    suffix = Path(path).suffix
    if suffix == ".dta":
        letters = {k: sorted({v for v in vals if isinstance(v, str)}) for k, vals in cols.items()}
        frame = pl.DataFrame([pl.Series(k, v, dtype=pl.Object if letters[k] else None) for k, v in cols.items()])
        pyreadstat.write_dta(frame, str(path), missing_user_values={k: v for k, v in letters.items() if v},
                             variable_value_labels=GSS_LABELS)
        return path
    numeric = {k: [GSS_NUMERIC_MISSING[v] if isinstance(v, str) else v for v in vals] for k, vals in cols.items()}
    frame = pl.DataFrame(numeric)
    if suffix == ".sav":
        missing = {k: [{"lo": -100, "hi": -40}] for k in numeric if k not in ("year", "id", "wtssps")}
        pyreadstat.write_sav(frame, str(path), missing_ranges=missing, variable_value_labels=GSS_LABELS)
    else:
        frame.rename({"id": "id_"}).write_csv(path)
    return path


def write_all(directory: Path, n: int = 240) -> dict[str, Path]:
    """One file per survey in `directory`, keyed like the catalog's surveys."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "wvs7": write_wvs7_csv(directory / "WVS_Cross-National_Wave_7_csv_v6_0.csv", n=n),
        "joint": write_joint(directory / "EVS_WVS_Joint_Csv_v5_0.csv", n=n),
        "gss": write_gss(directory / "GSS2022.dta", n=n),
    }


if __name__ == "__main__":
    import sys

    for survey, written in write_all(Path(sys.argv[1])).items():
        print(f"{survey}: {written}")
