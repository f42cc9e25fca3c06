"""Trait-inference metrics (bench_adapters.traits): per model × condition × target trait × subgroup, beside
population priors, with paired bootstrap intervals over personas.

- accuracy: the real answer chosen. Ordinal score (ordinal scales only): 1 − |predicted − real| / (k − 1),
  k the scale's points (in letter-logprob mode the adapter scores the expected position).
- priors, from the persona data alone, no model: `prior:uniform` (every answer equally likely; its accuracy is
  1/k exactly), `prior:majority` (the most common answer of everyone else) and `prior:country_sex_age` (the most
  common answer among the other respondents of the same country × sex × age band; a respondent alone in their
  cell gets the global one). Both majorities leave the respondent out (never predicting themself); tied
  answers share the prediction equally (the expected score of a random tie-break).
- lift = model − best prior on the trait's primary score (ordinal score on ordinal scales, else accuracy),
  the best prior being the one scoring highest on the same trait and subgroup.
- alignment: the distribution of predicted answers over a subgroup's personas against their real answers'
  distribution: 1 − W1 / (k − 1) on ordinal scales (OpinionQA's representativeness, Santurkar et al. 2023;
  WorldValuesBench's EMD on answers normalised to [0, 1], Demon702/WorldValuesBench evaluation/evaluate.py
  @ 351947c) and 1 − Jensen-Shannon distance (base 2, so in [0, 1]) on nominal ones (GlobalOpinionQA's
  similarity, Durmus et al. 2023). Invalid answers are left out of the predicted distribution (their rate is
  its own column); a subgroup with no valid answer has no alignment.

Intervals: percentile 95% from Poisson(1) bootstrap weights over personas (engine's own scheme), one weight
per persona shared by every model, condition, prior and subgroup, so a lift is paired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import polars as pl

MISSING = "(missing)"
PRIORS = ("prior:uniform", "prior:majority", "prior:country_sex_age")
PRIOR_CELL = ("country", "sex", "age_band")
LEVEL = 0.95
CHUNK = 100  # bootstrap resamples drawn at once: bounds the float weights at CHUNK × personas


def wasserstein_alignment(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """1 − W1(p, q) / (k − 1) for distributions over the k ordered points 0..k−1 (last axis; any leading axes)."""
    k = p.shape[-1]
    w1 = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))[..., :-1].sum(axis=-1)
    return 1.0 - w1 / (k - 1)


def js_alignment(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """1 − Jensen-Shannon distance, base 2 (last axis; any leading axes)."""
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)

    return 1.0 - np.sqrt(np.clip((kl(p) + kl(q)) / 2.0, 0.0, 1.0))


def alignment(p: np.ndarray, q: np.ndarray, ordinal: bool) -> np.ndarray:
    """Alignment of count or probability vectors p and q (normalised here); NaN where either is all zero."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
    return wasserstein_alignment(p, q) if ordinal else js_alignment(p, q)


def majority(counts: np.ndarray) -> np.ndarray:
    """Rows of answer counts → the majority prediction as probabilities (ties shared equally; all-zero rows
    stay zero)."""
    top = counts.max(axis=-1, keepdims=True)
    winners = ((counts == top) & (top > 0)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(winners / winners.sum(axis=-1, keepdims=True))


def loo_priors(answers: np.ndarray, cells: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The three priors for respondents with answer positions `answers` (−1: not answered) in prior cells
    `cells` (integer codes): name → n × k prediction probabilities, each row leaving its own answer out."""
    n = answers.size
    answered = answers >= 0
    own = np.zeros((n, k))
    own[np.flatnonzero(answered), answers[answered]] = 1.0
    total = own.sum(axis=0)
    cell_counts = np.zeros((cells.max(initial=0) + 1, k))
    np.add.at(cell_counts, cells, own)
    global_loo = majority(total[None, :] - own)
    local = cell_counts[cells] - own
    local_loo = np.where(local.sum(axis=1, keepdims=True) > 0, majority(local), global_loo)
    return {PRIORS[0]: np.full((n, k), 1.0 / k), PRIORS[1]: global_loo, PRIORS[2]: local_loo}


@dataclass(frozen=True)
class _Predictor:
    model: str
    condition: str
    probs: np.ndarray  # n × k predicted answer probabilities (one-hot; a zero row: invalid or no row)
    accuracy: np.ndarray  # n, per persona (mean over samples)
    ordinal: np.ndarray  # n, the ordinal score per persona (NaN on nominal scales)
    invalid: np.ndarray  # n, invalid rate per persona
    present: np.ndarray  # n, 1.0 where the predictor has a scored row for the persona


def per_target(rows: pl.DataFrame) -> pl.DataFrame:
    """Point estimates per model × condition × target: n, accuracy, ordinal score (ordinal targets), invalid."""
    rows = _scored(rows)
    return (
        rows.group_by("model", "condition", "target", "ordinal")
        .agg(
            pl.len().alias("n"),
            pl.col("correct").mean().alias("accuracy"),
            pl.when(pl.col("ordinal")).then(pl.col("score")).mean().alias("ordinal_score"),
            pl.col("invalid").cast(pl.Float64).mean().alias("invalid"),
        )
        .sort("model", "condition", "target")
    )


def _scored(rows: pl.DataFrame) -> pl.DataFrame:
    meta = pl.col("meta")
    return rows.filter(pl.col("status") == "ok").with_columns(
        meta.str.json_path_match("$.target").alias("target"),
        (meta.str.json_path_match("$.ordinal") == "true").alias("ordinal"),
        meta.str.json_path_match("$.scale").alias("scale"),
    )


def trait_tables(
    rows: pl.DataFrame,
    personas: pl.DataFrame,
    specs: Sequence[tuple[str, ...]] = (),
    resamples: int = 1000,
    seed: int = 0,
    min_size: int = 30,
) -> dict[tuple[str, ...], pl.DataFrame]:
    """spec (() for the whole population) → one row per model (and prior) × condition × target × subgroup:
    n personas, accuracy, ordinal_score, lift (over best_prior), alignment, each with `_lo`/`_hi`, invalid,
    and `small` (fewer than min_size personas). `rows`: one traits benchmark's result rows; `personas`:
    persona_id and one String column per trait (the run's personas.parquet, with age_band derived)."""
    scored = _scored(rows)
    personas = personas.with_columns(pl.exclude("persona_id").cast(pl.String).fill_null(MISSING))
    specs = ((), *[s for s in specs if s])
    out: dict[tuple[str, ...], list[pl.DataFrame]] = {s: [] for s in specs}
    for (target, scale_text), part in scored.group_by("target", "scale", maintain_order=True):
        scale = tuple(orjson.loads(scale_text))
        ordinal = bool(part["ordinal"][0])
        for spec, frame in _target_tables(str(target), scale, ordinal, part, personas, specs, resamples, seed, min_size).items():
            out[spec].append(frame)
    return {s: pl.concat(f, how="diagonal_relaxed").sort("target", *s, "model", "condition") if f else pl.DataFrame() for s, f in out.items()}


def _target_tables(
    target: str, scale: tuple[str, ...], ordinal: bool, part: pl.DataFrame, personas: pl.DataFrame,
    specs: Sequence[tuple[str, ...]], resamples: int, seed: int, min_size: int,
) -> dict[tuple[str, ...], pl.DataFrame]:
    """One target's rows per spec: every model × condition and prior, scored on the target's test personas."""
    k = len(scale)
    ids = part["persona_id"].unique().sort()
    n = ids.len()
    frame = pl.DataFrame({"persona_id": ids}).join(personas, on="persona_id", how="left", maintain_order="left")
    frame = frame.with_columns(pl.exclude("persona_id").fill_null(MISSING))
    gold_letter = part.group_by("persona_id").agg(pl.col("gold").first())
    gold = pl.DataFrame({"persona_id": ids}).join(gold_letter, on="persona_id", how="left", maintain_order="left")["gold"]
    real = np.array([ord(g) - 65 for g in gold.to_list()])
    onehot_real = np.zeros((n, k))
    onehot_real[np.arange(n), real] = 1.0
    far = 1.0 - np.abs(np.arange(k)[None, :] - real[:, None]) / (k - 1)  # n × k ordinal score of each answer
    predictors = _model_predictors(part, ids, k, ordinal)
    predictors += _prior_predictors(target, scale, ordinal, ids, personas, onehot_real, far)
    tables = {}
    # uint8: exact for Poisson(1) counts and a quarter of float32's memory; cast a chunk at a time in _stats
    weights = np.random.default_rng([seed, *target.encode()]).poisson(1.0, size=(resamples, n)).astype(np.uint8) if resamples else None
    for spec in specs:
        levels, members = _members(frame, spec)
        rows = []
        stats = [_stats(p, onehot_real, members, weights, ordinal) for p in predictors]
        primary = "ordinal_score" if ordinal else "accuracy"
        prior_at = [i for i, p in enumerate(predictors) if p.model in PRIORS]
        for j, level in enumerate(levels):
            best = max(prior_at, key=lambda i: np.nan_to_num(stats[i][primary][0][j], nan=-1.0))
            for p, st in zip(predictors, stats):
                row = {"model": p.model, "condition": p.condition, "target": target, "ordinal": ordinal, **level, "n": int(st["n"][j])}
                for name in ("accuracy", "ordinal_score", "alignment"):
                    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = _with_ci(st[name], j)
                if p.model in PRIORS:
                    row["lift"] = row["lift_lo"] = row["lift_hi"] = None
                else:
                    point = st[primary][0][j] - stats[best][primary][0][j]
                    draws = None if weights is None else st[primary][1][:, j] - stats[best][primary][1][:, j]
                    row["lift"], row["lift_lo"], row["lift_hi"] = _with_ci((np.array([point]), None if draws is None else draws[:, None]), 0)
                row["best_prior"] = predictors[best].model
                row["invalid"] = float(st["invalid"][j]) if st["n"][j] else None
                row["small"] = 0 < st["n"][j] < min_size
                rows.append(row)
        tables[spec] = pl.DataFrame(rows)
    return tables


def _model_predictors(part: pl.DataFrame, ids: pl.Series, k: int, ordinal: bool) -> list[_Predictor]:
    """One predictor per model × condition: its answers per persona, averaged over samples."""
    out = []
    index = {pid: i for i, pid in enumerate(ids.to_list())}
    for (model, condition), rows in part.group_by("model", "condition", maintain_order=True):
        n = ids.len()
        probs, acc, ordn, inv, cnt = np.zeros((n, k)), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        for pid, answer, correct, invalid, score in rows.select("persona_id", "answer", "correct", "invalid", "score").iter_rows():
            i = index[pid]
            cnt[i] += 1
            acc[i] += correct or 0.0
            ordn[i] += score or 0.0
            inv[i] += bool(invalid)
            if answer is not None and not invalid:
                probs[i, ord(answer) - 65] += 1.0
        seen = cnt > 0
        scale_by = np.where(seen, cnt, 1.0)
        out.append(_Predictor(str(model), str(condition), probs / scale_by[:, None], acc / scale_by,
                              ordn / scale_by if ordinal else np.full(n, np.nan), inv / scale_by, seen.astype(float)))
    return out


def _prior_predictors(
    target: str, scale: tuple[str, ...], ordinal: bool, ids: pl.Series, personas: pl.DataFrame, onehot_real: np.ndarray, far: np.ndarray
) -> list[_Predictor]:
    """Priors over every persona of the run that answered the target (the train split too), scored on the
    test personas `ids`."""
    k = len(scale)
    position = {label: j for j, label in enumerate(scale)}
    # A target that is itself a cell trait (sex, age band) is left out of the cell: the cell would give the answer away.
    cell_cols = [c for c in PRIOR_CELL if c in personas.columns and c != target]
    everyone = personas.select("persona_id", *(c for c in (target, *cell_cols) if c in personas.columns))
    if target not in everyone.columns:
        everyone = everyone.with_columns(pl.lit(MISSING).alias(target))
    answers = np.array([position.get(a, -1) for a in everyone[target].to_list()])
    cells = (everyone.select(pl.struct(cell_cols).rank("dense")).to_series().to_numpy().astype(np.int64) - 1) if cell_cols else np.zeros(everyone.height, np.int64)
    priors = loo_priors(answers, cells, k)
    where = {pid: i for i, pid in enumerate(everyone["persona_id"].to_list())}
    at = np.array([where[pid] for pid in ids.to_list()])
    n = ids.len()
    out = []
    for name, probs in priors.items():
        p = probs[at]
        out.append(_Predictor(name, "-", p, (p * onehot_real).sum(axis=1), (p * far).sum(axis=1) if ordinal else np.full(n, np.nan),
                              np.zeros(n), np.ones(n)))
    return out


def _members(frame: pl.DataFrame, spec: tuple[str, ...]) -> tuple[list[dict[str, str]], list[np.ndarray]]:
    """The spec's subgroups (each a {trait: level}) and each subgroup's persona positions."""
    if not spec:
        return [{}], [np.arange(frame.height)]
    keyed = frame.select(*(pl.col(c) if c in frame.columns else pl.lit(MISSING).alias(c) for c in spec))
    levels = keyed.unique().sort(list(spec))
    code = keyed.join(levels.with_row_index("code"), on=list(spec), how="left", maintain_order="left")["code"].to_numpy()
    return levels.to_dicts(), [np.flatnonzero(code == j) for j in range(levels.height)]


def _stats(p: _Predictor, real: np.ndarray, members: list[np.ndarray], weights: np.ndarray | None, ordinal: bool) -> dict:
    """Point estimates and bootstrap draws (resamples × subgroups) of one predictor's metrics."""
    present = p.present
    columns = {"accuracy": p.accuracy * present, "invalid": p.invalid * present}
    if ordinal:
        columns["ordinal_score"] = p.ordinal * present
    predicted, observed = p.probs * present[:, None], real * present[:, None]
    n = np.array([present[idx].sum() for idx in members])
    out: dict = {"n": n, "invalid": _ratio(np.array([columns["invalid"][idx].sum() for idx in members]), n)}
    for name in ("accuracy", "ordinal_score"):
        if name not in columns:
            out[name] = (np.full(len(members), np.nan), None)
            continue
        point = _ratio(np.array([columns[name][idx].sum() for idx in members]), n)
        draws = None
        if weights is not None:
            x = columns[name]
            draws = np.stack([_chunked(weights[:, idx], lambda w, idx=idx: _ratio(w @ x[idx], w @ present[idx])) for idx in members], axis=1)
        out[name] = (point, draws)
    point = np.array([alignment(predicted[idx].sum(axis=0), observed[idx].sum(axis=0), ordinal) for idx in members])
    draws = None
    if weights is not None:
        draws = np.stack(
            [_chunked(weights[:, idx], lambda w, idx=idx: alignment(w @ predicted[idx], w @ observed[idx], ordinal)) for idx in members], axis=1
        )
    out["alignment"] = (point, draws)
    return out


def _chunked(weights: np.ndarray, draw: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """draw() over CHUNK resamples at a time (float64 weights of one chunk at a time), concatenated."""
    return np.concatenate([draw(weights[i : i + CHUNK].astype(np.float64)) for i in range(0, weights.shape[0], CHUNK)])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _with_ci(estimate: tuple[np.ndarray, np.ndarray | None], j: int) -> tuple[float | None, float | None, float | None]:
    point, draws = estimate
    value = None if np.isnan(point[j]) else float(point[j])
    if draws is None or value is None:
        return value, None, None
    column = draws[:, j]
    column = column[~np.isnan(column)]
    if column.size == 0:
        return value, None, None
    lo, hi = np.quantile(column, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return value, float(lo), float(hi)
