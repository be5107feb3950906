"""PNG plots of replays (matplotlib, Agg backend: no display needed).

One replay: queue length and GPU utilization over time, and the JCT CDF.
A comparison: the same three panels with one line per policy, plus average JCT per policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gpufleet.domain import ValidationError
from gpufleet.sim.metrics import jct_values
from gpufleet.sim.recorder import Recorder

BINS = 600
DAY = 86400.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def binned(rec: Recorder, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-weighted means of queue length and busy GPUs in `bins` equal time bins (step signal)."""
    t = np.asarray(rec.t, dtype=float)
    if t.size < 2:
        return t, np.asarray(rec.queue_len, float), np.asarray(rec.busy_gpus, float)
    edges = np.linspace(t[0], t[-1], bins + 1)
    out = []
    for values in (rec.queue_len, rec.busy_gpus):
        v = np.asarray(values, dtype=float)
        cum = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(t))])  # integral up to each t[i]
        idx = np.clip(np.searchsorted(t, edges, side="right") - 1, 0, t.size - 1)
        at_edges = cum[idx] + v[idx] * (edges - t[idx])
        out.append(np.diff(at_edges) / np.diff(edges))
    mids = (edges[:-1] + edges[1:]) / 2
    return mids, out[0], out[1]


def plot_runs(runs: Sequence[tuple[str, Recorder]], path: str | Path, title: str = "") -> Path:
    """Write one PNG: queue length, GPU utilization, JCT CDF (and avg JCT bars when comparing)."""
    plt = _pyplot()
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ValidationError("plot", f"no such directory: {path.parent}")
    compare = len(runs) > 1
    fig, axes = plt.subplots(2, 2 if compare else 2, figsize=(13, 8))
    ax_q, ax_u, ax_cdf, ax_bar = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    avg = []
    for label, rec in runs:
        mids, q, busy = binned(rec)
        days = mids / DAY
        ax_q.plot(days, q, label=label, lw=1)
        ax_u.plot(days, busy / max(1, rec.total_gpus), label=label, lw=1)
        jct = np.sort(jct_values(rec))
        if jct.size:
            ax_cdf.plot(np.maximum(jct, 1.0), np.arange(1, jct.size + 1) / jct.size, label=label)
        avg.append(float(jct.mean()) / 3600 if jct.size else 0.0)
    _decorate(ax_q, "queue length (pending jobs)", "day", "jobs")
    _decorate(ax_u, "GPU utilization", "day", "busy / total")
    ax_u.set_ylim(0, 1.05)
    _decorate(ax_cdf, "JCT CDF", "job completion time (s, log)", "fraction of jobs")
    ax_cdf.set_xscale("log")
    if compare:
        ax_bar.bar([lbl for lbl, _ in runs], avg, color="tab:blue")
        ax_bar.tick_params(axis="x", rotation=30)
        _decorate(ax_bar, "average JCT", "", "hours", legend=False)
    else:
        _text_panel(ax_bar, runs[0][1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _decorate(ax, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _text_panel(ax, rec: Recorder) -> None:
    jct = jct_values(rec)
    lines = [
        f"jobs finished   {jct.size}",
        f"avg JCT         {jct.mean() / 3600 if jct.size else 0:.2f} h",
        f"median JCT      {np.median(jct) / 3600 if jct.size else 0:.2f} h",
        f"preemptions     {rec.preemptions}",
        f"GPUs            {rec.total_gpus}",
        f"cycles          {rec.cycles}",
    ]
    ax.axis("off")
    ax.text(0.02, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=11)
