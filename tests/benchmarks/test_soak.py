from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from benchmarks.soak import (
    MIB,
    Sample,
    every,
    l1_worker,
    plot_svg,
    read_sample,
    rss_bytes,
    rss_slope_mib_per_hour,
    table_rows,
)

SVG = "{http://www.w3.org/2000/svg}"


def samples(rss_mib: list[float], step: float = 10.0) -> list[Sample]:
    return [
        Sample((i + 1) * step, int(r * MIB), 1000 * (i + 1), i + 1, 2 * i)
        for i, r in enumerate(rss_mib)
    ]


def test_every_keeps_one_sample_a_step_and_the_last() -> None:
    got = [s.seconds for s in every(samples([100.0] * 14), 60)]
    assert got == [10.0, 70.0, 130.0, 140.0]


def test_table_rows_show_minutes_mib_and_counts() -> None:
    rows = table_rows([Sample(70.4, 150 * MIB + MIB // 2, 1_234_567, 890, 12_345)])
    assert rows == [
        ["time", "RSS MiB", "L1 bytes", "L1 entries", "L1 evictions"],
        ["1:10", "150.5", "1,234,567", "890", "12,345"],
    ]


def test_rss_slope_leaves_the_first_half_out() -> None:
    # Growth while filling, then 1 MiB a minute: 60 MiB an hour.
    rss = [50.0, 80.0, 100.0, 110.0, *(110.0 + (i + 1) / 6 for i in range(8))]
    assert rss_slope_mib_per_hour(samples(rss)) == pytest.approx(60.0)
    assert rss_slope_mib_per_hour(samples([100.0] * 10)) == 0.0
    assert rss_slope_mib_per_hour(samples([100.0, 200.0])) == 0.0, "too few samples"


def test_plot_draws_each_series_and_its_bound_in_two_panels() -> None:
    svg = plot_svg(samples([100.0, 101.0, 102.0]), max_bytes=8 * MIB, rss_bound_bytes=120 * MIB)
    root = ET.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert all(len(line.get("points", "").split()) == 3 for line in lines)
    dashed = [e for e in root.findall(f"{SVG}line") if e.get("stroke-dasharray")]
    assert len(dashed) == 2
    texts = [t.text or "" for t in root.findall(f"{SVG}text")]
    assert "bound 120.0 MiB" in texts
    assert "CACHE_L1_MAX_BYTES 8.00 MiB" in texts
    # The bound sits above the series: y grows downwards.
    rss_bound_y = float(dashed[0].get("y1", "0"))
    top_rss_y = min(float(p.split(",")[1]) for p in lines[0].get("points", "").split())
    assert rss_bound_y < top_rss_y


def test_plot_of_no_samples_is_still_a_document() -> None:
    root = ET.fromstring(plot_svg([], max_bytes=MIB, rss_bound_bytes=MIB))
    assert root.findall(f"{SVG}polyline") == []


def test_l1_worker_picks_one_by_pid_and_refuses_ambiguity() -> None:
    stats = {"l1": {"workers": [{"pid": 1, "bytes": 5}, {"pid": 2, "bytes": 7}]}}
    assert l1_worker(stats, 2)["bytes"] == 7
    with pytest.raises(RuntimeError):
        l1_worker(stats)
    with pytest.raises(RuntimeError):
        l1_worker({"cache": {}})


def test_read_sample_reads_the_rss_of_the_listed_worker() -> None:
    pid = os.getpid()
    stats = {"l1": {"workers": [{"pid": pid, "bytes": 4096, "entries": 3, "evictions": 9}]}}
    sample = read_sample(stats, 12.5)
    assert (sample.seconds, sample.l1_bytes, sample.l1_entries, sample.l1_evictions) == (
        12.5, 4096, 3, 9
    )  # fmt: skip
    assert sample.rss_bytes > 0
    assert abs(sample.rss_bytes - rss_bytes(pid)) < 64 * MIB


def test_without_an_l1_object_the_sample_has_the_rss_of_the_only_worker() -> None:
    pid = os.getpid()
    sample = read_sample({"db_pool": {"workers": [{"pid": pid}]}}, 10.0)
    assert sample.rss_bytes > 0
    assert not sample.has_l1
    assert table_rows([sample])[1][2:] == ["n/a", "n/a", "n/a"]
    with pytest.raises(RuntimeError):
        read_sample({"db_pool": {"workers": [{"pid": pid}, {"pid": 1}]}}, 10.0)
