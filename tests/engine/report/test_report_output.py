"""`mtpa-engine report` end to end on a synthetic run: files, tables, and the HTML rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.testing.synthetic import BASELINE, condition, personas_frame, random_results, write_run

CONDITIONS = [BASELINE, condition("prose"), condition("json", "json"), condition("no_country", traits="-country"),
              condition("demographic", traits="demographic"), condition("values", traits="values")]
EFFECTS = {"prose": 0.08, "json": 0.05, "no_country": 0.02, "demographic": 0.06, "values": -0.04}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("report")
    people = personas_frame(48, ["Germany", "India", "Nigeria", "Brazil", "Japan", "United States"], seed=1)
    chunks = random_results(models=["model-a", "model-b"], benchmarks=["truthfulqa", "bbq"], effects=EFFECTS, questions=60, personas=people, seed=2)
    run_dir = write_run(root / "run", list(chunks), people, CONDITIONS)
    out = root / "out"
    cmd = [sys.executable, "-m", "engine.cli", "report", str(run_dir), "--bootstrap", "300", "--by", "country", "--by", "sex",
           "--by", "sex+age_band", "--min-size", "10", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "220"})
    assert proc.returncode == 0, proc.stderr
    return run_dir, out, proc


def test_every_aggregate_is_written_as_csv_and_parquet(report_dir):
    _, out, proc = report_dir
    names = ["scores_by_condition", "delta_by_condition", "delta_by_country", "delta_by_sex", "delta_by_sex_x_age_band", "trait_ablation", "format_agreement"]
    for name in names:
        csv, parquet = pl.read_csv(out / f"{name}.csv"), pl.read_parquet(out / f"{name}.parquet")
        assert csv.height == parquet.height > 0 and csv.columns == parquet.columns
    effect = pl.read_parquet(out / "delta_by_condition.parquet")
    assert effect.height == 2 * 2 * 5 and {"delta_lo", "delta_hi", "p", "q_bh", "small", "inv_base", "inv_persona"} <= set(effect.columns)
    cross = pl.read_parquet(out / "delta_by_sex_x_age_band.parquet")
    assert {"sex", "age_band"} <= set(cross.columns) and cross["small"].any(), "48 personas over sex × age band: some cells under 10"
    ablation = pl.read_parquet(out / "trait_ablation.parquet")
    assert set(ablation["removed"]) == {"country", "values traits", "demographic traits"} and set(ablation["reference"]) == {"prose"}
    summary = (out / "summary.md").read_text()
    for heading in ("Table 2", "Table 3", "Table 4", "Table 5", "Trait ablation", "render formats"):
        assert heading in summary and heading in proc.stdout
    assert "| model | benchmark | condition |" in summary


def test_html_is_self_contained(report_dir):
    html = (report_dir[1] / "report.html").read_text()
    assert html.count("<svg") >= 6  # forest plots, country bars per benchmark, heat map, ablation
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "nothing loaded from the network"
    assert "<script" not in html


def _read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) to height × width × channels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average and Paeth depend on the pixel to the left: decode the row left to right
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                left = cur[x - channels] if x >= channels else 0
                up, upleft = prev[x], prev[x - channels] if x >= channels else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - upleft
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else upleft
                cur[x] = (line[x] + pred) & 255
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs the Debian package chromium (.ci/run installs it)")
def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    shot = tmp_path / "report.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,2000",
           (report_dir[1] / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    pixels = _read_png(shot)
    assert pixels.shape == (2000, 1200, 3)
    ink = (pixels < 235).any(axis=2)
    assert 0.02 < ink.mean() < 0.6, "a rendered page: text and charts on a light background, not blank, not a solid fill"
    rows_with_ink = ink.any(axis=1).mean()
    assert rows_with_ink > 0.5, "content spreads down the page"
    chart_blue = (np.abs(pixels.astype(int) - [47, 109, 179]).sum(axis=2) < 40).sum()
    assert chart_blue > 500, "the charts' marks are drawn"
