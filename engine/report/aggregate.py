"""Grouped means with seeded paired bootstrap intervals, for every subgroup of every family in one pass.

A *family* is one model × benchmark × condition (or another key set); a *spec* is a tuple of trait columns
whose intersection defines subgroups (`()` is the whole family). Each row of the input is one result row
placed at a question `q` and a persona `p` (null when the condition has no persona) and carries the columns
the ratios sum. A ratio's estimate is Σ num / Σ den over the rows of a subgroup.

The bootstrap resamples questions and personas as crossed units (Owen's pigeonhole bootstrap): resample b
gives cell (q, p) the weight wq[b, q] · wp[b, p]. Per family the rows are summed into dense question ×
persona blocks, so one resample set costs two matrix products for every subgroup at once:

    draws[b, level] = Σ_p ((wq @ X)[b, p] · wp[b, p]) · member[p, level]

No Python loop runs over resamples; memory is bounded by the persona block size, not the run size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from engine.report.clustered import two_way_se
from engine.report.load import MISSING, Run
from engine.report.stats import LEVEL, benjamini_hochberg, interval, p_value, poisson_weights, ratio_draws, t_critical, t_two_sided_p

Spec = tuple[str, ...]
OVERALL: Spec = ()
ROWS = "n"  # the implicit row count column: every ratio over rows uses it as denominator
BLOCK = 2048  # personas per dense block: bounds memory at questions × BLOCK per summed column
DELTA_BOUND = 1.0  # |Δ| of scores in [0, 1]
BOOTSTRAP, CLUSTER_T = "bootstrap", "cluster-t"  # how a tested row got its interval and p (`p_method`)
NO_VARIANCE_SE = 1e-12  # a standard error this small is float noise around zero: every paired difference equal


@dataclass(frozen=True)
class Ratio:
    name: str
    num: str
    den: str = ROWS
    minus: str | None = None  # estimate (Σ num − Σ minus) / Σ den: a paired difference from two sums
    boot: bool = True  # False: point estimate only (rates reported beside a score)


@dataclass(frozen=True)
class Settings:
    resamples: int = 1000
    seed: int = 0
    min_size: int = 30  # personas; a smaller subgroup is flagged `small`, never hidden, and tested by cluster-t


@dataclass
class Index:
    """Question and persona positions shared by every aggregate of a report, so that a resample draws the
    same questions and personas for every model, condition and subgroup (the comparison stays paired)."""

    items: pl.DataFrame  # benchmark, item_id, q
    personas: pl.DataFrame  # persona_id, p, trait columns (nulls as MISSING)
    settings: Settings
    _question_weights: dict[str, np.ndarray] = field(default_factory=dict)
    _persona_weights: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, run: Run, settings: Settings) -> Index:
        items, seen = pl.collect_all(
            [
                run.results.select("benchmark", "item_id").unique(),
                run.results.select(pl.col("persona_id").drop_nulls().unique()),
            ]
        )
        items = items.sort("benchmark", "item_id").with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("benchmark").alias("q"))
        ids = pl.concat([run.personas.select("persona_id"), seen]).unique().sort("persona_id")
        personas = ids.join(run.personas, on="persona_id", how="left").with_columns(
            pl.int_range(pl.len(), dtype=pl.Int32).alias("p"), pl.exclude("persona_id").fill_null(MISSING)
        )
        return cls(items, personas, settings)

    def attach(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Add q and p to result rows (p stays null for rows without a persona)."""
        return frame.join(self.items.lazy(), on=["benchmark", "item_id"], how="left").join(
            self.personas.lazy().select("persona_id", "p"), on="persona_id", how="left"
        )

    def questions(self, benchmark: str) -> int:
        return self.items.filter(pl.col("benchmark") == benchmark).height

    def question_weights(self, benchmark: str) -> np.ndarray:
        if benchmark not in self._question_weights:
            w = poisson_weights(self.settings.seed, ("questions", benchmark), self.settings.resamples, self.questions(benchmark))
            self._question_weights[benchmark] = w.astype(np.float32)
        return self._question_weights[benchmark]

    def persona_weights(self, block: int) -> np.ndarray:
        if block not in self._persona_weights:
            width = min(BLOCK, self.personas.height - block * BLOCK)
            self._persona_weights[block] = poisson_weights(self.settings.seed, ("personas", block), self.settings.resamples, width)
        return self._persona_weights[block].astype(np.float32)


@dataclass(frozen=True)
class _Levels:
    """Every spec's subgroups laid side by side as columns 0..total-1; column 0 is the whole family."""

    specs: tuple[Spec, ...]
    offsets: tuple[int, ...]
    labels: tuple[pl.DataFrame, ...]  # per spec: its trait columns, one row per level, in column order
    codes: np.ndarray  # personas × specs: each persona's level column per spec
    total: int

    @classmethod
    def build(cls, personas: pl.DataFrame, specs: Sequence[Spec]) -> _Levels:
        offsets, labels, codes = [], [], []
        total = 1
        for spec in specs:
            if not spec:
                offsets.append(0)
                labels.append(pl.DataFrame())
                codes.append(np.zeros(personas.height, dtype=np.int64))
                continue
            levels = personas.select(spec).unique().sort(spec).with_row_index("code")
            code = personas.select(spec).join(levels, on=list(spec), how="left", maintain_order="left")["code"].to_numpy()
            offsets.append(total)
            labels.append(levels.drop("code"))
            codes.append(code.astype(np.int64) + total)
            total += levels.height
        return cls(tuple(specs), tuple(offsets), tuple(labels), np.stack(codes, axis=1) if codes else np.zeros((personas.height, 0), np.int64), total)

    def members(self, start: int, width: int) -> np.ndarray:
        """width × total 0/1 matrix: which level columns personas start..start+width belong to."""
        onehot = np.zeros((width, self.total), dtype=np.float32)
        onehot[:, 0] = 1.0
        rows = np.arange(width)[:, None]
        onehot[rows, self.codes[start : start + width]] = 1.0
        return onehot

    def no_persona(self) -> np.ndarray:
        """Rows without a persona belong to the whole family only: they have no traits."""
        onehot = np.zeros((1, self.total), dtype=np.float32)
        onehot[0, 0] = 1.0
        return onehot


class _Sums:
    """Per family: point sums and resampled sums of every column, per level column."""

    def __init__(self, columns: Sequence[str], booted: Sequence[str], questions: int, levels: int, resamples: int) -> None:
        self.point = {c: np.zeros(levels) for c in columns}
        self.boot = {c: np.zeros((resamples, levels)) for c in booted}
        self.cover = np.zeros((questions, levels), dtype=np.float32)  # rows per question per level
        self.personas = np.zeros(levels)

    def add(self, per_persona: dict[str, np.ndarray], dense: dict[str, np.ndarray], wq: np.ndarray | None, wp: np.ndarray | None, onehot: np.ndarray, has_persona: bool) -> None:
        """per_persona: float64 column sums per persona of the block (exact point estimates); dense:
        float32 question × persona sums of the rows and of each resampled column (the BLAS-heavy part)."""
        member = onehot.astype(np.float64)
        for col, x in per_persona.items():
            self.point[col] += x @ member
        for col in self.boot:
            drawn = wq @ dense[col]
            self.boot[col] += (drawn * wp if wp is not None else drawn).astype(np.float64) @ member
        self.cover += dense[ROWS] @ onehot
        if has_persona:
            self.personas += (per_persona[ROWS] > 0) @ member


def aggregate(
    cells: pl.DataFrame,
    ratios: Sequence[Ratio],
    index: Index,
    specs: Sequence[Spec] = (OVERALL,),
    family: Sequence[str] = ("model", "benchmark", "condition"),
    test: str | None = None,
) -> dict[Spec, pl.DataFrame]:
    """One table per spec: family keys, the spec's trait columns, n, questions, personas, each ratio with
    its interval (`name`, `name_lo`, `name_hi`), and for the `test` ratio `p`, `p_method`, `q_bh` and `small`.
    Subgroups with no rows are absent; small ones are flagged.

    The test ratio's interval and p come from the crossed bootstrap when a group has at least `min_size`
    personas and `min_size` questions, else from the two-way cluster-robust t (`engine.report.clustered`);
    both are withheld (null, `p_method` null) when the group has fewer than 2 personas or 2 questions, or no
    variance (every cluster residual 0, e.g. every paired difference equal). q_bh is Benjamini-Hochberg
    within each `p_method` of the table: small groups are a family of their own."""
    levels = _Levels.build(index.personas, specs)
    columns = sorted({ROWS} | {c for r in ratios for c in (r.num, r.den, r.minus) if c is not None})
    booted = sorted({ROWS} | {c for r in ratios if r.boot for c in (r.num, r.den, r.minus) if c is not None})
    if index.settings.resamples == 0:
        booted = []
    out: dict[Spec, list[pl.DataFrame]] = {spec: [] for spec in specs}
    arrays = {c: cells[c].fill_null(0.0).to_numpy() for c in columns if c != ROWS}
    arrays["q"] = cells["q"].to_numpy()
    arrays["p"] = cells["p"].fill_null(-1).to_numpy()
    keys = cells.select(family)
    for rows_by_block in _partition(cells, family, arrays["p"], index.personas.height):
        key = keys.row(int(next(iter(rows_by_block.values()))[0]))
        sums = _family_sums(rows_by_block, arrays, dict(zip(family, key))["benchmark"], columns, booted, index, levels)
        clustered = _clustered(rows_by_block, arrays, ratios, test, levels) if test is not None else None
        for spec, offset, labels in zip(levels.specs, levels.offsets, levels.labels):
            width = max(labels.height, 1)
            cols = slice(offset, offset + width)
            frame = _rows(sums, ratios, cols, test, None if clustered is None else (clustered[0][cols], clustered[1][cols]), index.settings.min_size)
            head = pl.DataFrame({k: [v] * width for k, v in zip(family, key)}, schema={k: pl.String for k in family})
            frame = pl.concat([head, labels, frame], how="horizontal") if spec else pl.concat([head, frame], how="horizontal")
            out[spec].append(frame.filter(pl.col("n") > 0))
    return {spec: _finish(frames, index.settings, test) for spec, frames in out.items()}


def _partition(cells: pl.DataFrame, family: Sequence[str], p: np.ndarray, personas: int) -> Iterator[dict[int, np.ndarray]]:
    """Row positions per family, split by persona block (-1: rows without a persona), from one stable
    argsort of a small integer key (a radix sort when it fits 16 bits) instead of a multi-column sort."""
    family_code = cells.select(pl.struct(*(pl.col(k).to_physical() for k in family)).rank("dense")).to_series().to_numpy()
    blocks = -(-personas // BLOCK) + 1
    key = (family_code.astype(np.int64) - 1) * blocks + (p // BLOCK + 1)
    order = np.argsort(key.astype(np.uint16 if key.max(initial=0) < 2**16 else np.uint32), kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.diff(key, prepend=-1))
    current: dict[int, np.ndarray] = {}
    for lo, hi in zip(starts, [*starts[1:], key.size]):
        if current and key[lo] // blocks != key[lo - 1] // blocks:
            yield current
            current = {}
        current[int(key[lo] % blocks) - 1] = order[lo:hi]
    if current:
        yield current


def _family_sums(rows_by_block: dict[int, np.ndarray], arrays: dict[str, np.ndarray], benchmark: str, columns: list[str], booted: list[str], index: Index, levels: _Levels) -> _Sums:
    """Sum one family's rows block by block into dense question × persona matrices (block -1: no persona)."""
    questions = index.questions(benchmark)
    sums = _Sums(columns, booted, questions, levels.total, index.settings.resamples)
    wq = index.question_weights(benchmark) if booted else None
    for block, rows in rows_by_block.items():
        start = max(block, 0) * BLOCK
        width = 1 if block < 0 else min(BLOCK, index.personas.height - start)
        local = np.zeros(rows.size, dtype=np.int64) if block < 0 else arrays["p"][rows] - start
        flat = arrays["q"][rows] * width + local
        per_persona = {ROWS: np.bincount(local, minlength=width).astype(np.float64)}
        dense = {ROWS: np.bincount(flat, minlength=questions * width).reshape(questions, width).astype(np.float32)}
        for c in columns:
            if c == ROWS:
                continue
            v = arrays[c][rows]
            per_persona[c] = np.bincount(local, weights=v, minlength=width)
            if c in sums.boot:
                dense[c] = np.bincount(flat, weights=v, minlength=questions * width).reshape(questions, width).astype(np.float32)
        if block < 0:
            sums.add(per_persona, dense, wq, None, levels.no_persona(), has_persona=False)
        else:
            sums.add(per_persona, dense, wq, index.persona_weights(block) if booted else None, levels.members(start, width), has_persona=True)
    return sums


def _clustered(rows_by_block: dict[int, np.ndarray], arrays: dict[str, np.ndarray], ratios: Sequence[Ratio], test: str, levels: _Levels) -> tuple[np.ndarray, np.ndarray]:
    """The test ratio's two-way cluster-robust (se, df) per level column of one family."""
    r = next(r for r in ratios if r.name == test)
    rows = np.concatenate(list(rows_by_block.values()))
    d = arrays[r.num][rows] - (arrays[r.minus][rows] if r.minus else 0.0)
    w = np.ones(rows.size) if r.den == ROWS else arrays[r.den][rows]
    return two_way_se(d, w, arrays["q"][rows], arrays["p"][rows], levels.codes, levels.total)


def _test(estimate: np.ndarray, draws: np.ndarray | None, clustered: tuple[np.ndarray, np.ndarray], questions: np.ndarray, personas: np.ndarray, min_size: int) -> dict:
    """Interval, p and method of the test ratio per level: bootstrap for large groups, cluster-t for small ones,
    nothing (NaN, method None) for too few units or no variance."""
    se, df = clustered
    testable = (df >= 1) & (se > NO_VARIANCE_SE) & ~np.isnan(estimate)
    small = (personas < min_size) | (questions < min_size)
    use_t, use_boot = testable & small, testable & ~small & (draws is not None)
    half = t_critical(np.where(use_t, df, 1.0), LEVEL) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        p_t = t_two_sided_p(estimate / se, np.where(use_t, df, 1.0))
    lo, hi = interval(draws) if draws is not None else (np.full_like(estimate, np.nan),) * 2
    p_boot = p_value(estimate, draws) if draws is not None else np.full_like(estimate, np.nan)

    def pick(by_t: np.ndarray, by_boot: np.ndarray) -> np.ndarray:
        return np.where(use_t, by_t, np.where(use_boot, by_boot, np.nan))

    method = [CLUSTER_T if t else BOOTSTRAP if b else None for t, b in zip(use_t, use_boot)]
    # Every per-item score lies in [0, 1], so a Δ lies in [-1, 1]: a t interval reaching past that (few clusters:
    # t on 1 df is 12.7 standard errors) is cut to the values Δ can take. Its coverage is unchanged (the true Δ is
    # inside [-1, 1] anyway); only the impossible part goes.
    lo_t, hi_t = np.maximum(estimate - half, -DELTA_BOUND), np.minimum(estimate + half, DELTA_BOUND)
    return {"lo": pick(lo_t, lo), "hi": pick(hi_t, hi), "p": pick(p_t, p_boot), "p_method": method}


def _rows(sums: _Sums, ratios: Sequence[Ratio], cols: slice, test: str | None, clustered: tuple[np.ndarray, np.ndarray] | None, min_size: int) -> pl.DataFrame:
    n = sums.point[ROWS][cols]
    data: dict[str, np.ndarray] = {
        "n": n.astype(np.int64),
        "questions": (sums.cover[:, cols] > 0).sum(axis=0).astype(np.int64),
        "personas": sums.personas[cols].astype(np.int64),
    }
    for r in ratios:
        num = sums.point[r.num][cols] - (sums.point[r.minus][cols] if r.minus else 0.0)
        estimate = ratio_draws(num, sums.point[r.den][cols])
        data[r.name] = estimate
        draws = None
        if r.boot and sums.boot:
            draws = ratio_draws(sums.boot[r.num][:, cols] - (sums.boot[r.minus][:, cols] if r.minus else 0.0), sums.boot[r.den][:, cols])
            data[f"{r.name}_lo"], data[f"{r.name}_hi"] = interval(draws)
        elif r.boot:
            data[f"{r.name}_lo"] = data[f"{r.name}_hi"] = np.full_like(estimate, np.nan)
        if r.name == test and clustered is not None:
            tested = _test(estimate, draws, clustered, data["questions"], data["personas"], min_size)
            data[f"{r.name}_lo"], data[f"{r.name}_hi"], data["p"] = tested["lo"], tested["hi"], tested["p"]
            data["p_method"] = tested["p_method"]
    return pl.DataFrame([_column(name, values) for name, values in data.items()]).fill_nan(None)


def _column(name: str, values: np.ndarray | list) -> pl.Series:
    """A table column from a list, never from the array itself: polars reads any numpy array through numpy.ma
    (np.ma.getmask), whose import was ~10 ms of a 10-call run's closing tables (bench/startup.py). A column here
    holds one value per subgroup, so the copy is small; the values and dtypes are the array's."""
    if isinstance(values, np.ndarray):
        return pl.Series(name, values.tolist(), dtype=pl.Int64 if values.dtype.kind == "i" else pl.Float64)
    return pl.Series(name, values)


def _finish(frames: list[pl.DataFrame], settings: Settings, test: str | None) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame()
    table = pl.concat(frames, how="diagonal_relaxed")
    if test is not None and "p" in table.columns:
        p = table["p"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        method = table["p_method"].cast(pl.String).fill_null("").to_numpy()
        q = np.full_like(p, np.nan)
        for name in (BOOTSTRAP, CLUSTER_T):  # one BH family per method: small groups never dilute, nor are diluted by, large ones
            rows = method == name
            q[rows] = benjamini_hochberg(p[rows])
        table = table.with_columns(_column("q_bh", q).fill_nan(None))
    return table.with_columns(((pl.col("personas") > 0) & (pl.col("personas") < settings.min_size)).alias("small"))
