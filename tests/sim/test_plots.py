"""Plot data: time-weighted binning of the step signals, and the PNG itself."""

from __future__ import annotations

import pytest

from gpufleet.sim.plots import binned, plot_runs
from tests.sim.builders import job, sim


def test_binning_is_time_weighted():
    s = sim([job("a", 0, 10, 8), job("b", 0, 30, 8)])  # one 8-GPU node: b waits until t=10
    rec = s.run()
    assert rec.t == [0, 10, 40] and rec.queue_len == [1, 0, 0] and rec.busy_gpus == [8, 8, 0]
    mids, queue, busy = binned(rec, bins=4)  # bins of 10 s over [0, 40]
    assert list(mids) == [5, 15, 25, 35]
    assert list(queue) == pytest.approx([1, 0, 0, 0])
    assert list(busy) == pytest.approx([8, 8, 8, 8])


def test_plot_writes_a_png_for_one_and_for_several_runs(tmp_path):
    rec = sim([job("a", 0, 10, 2), job("b", 5, 30, 8)]).run()
    one = plot_runs([("fifo", rec)], tmp_path / "one.png")
    two = plot_runs([("fifo", rec), ("sjf", rec)], tmp_path / "two.png", title="t")
    for p in (one, two):
        assert p.read_bytes()[:4] == b"\x89PNG"
