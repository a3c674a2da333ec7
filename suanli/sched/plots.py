"""Matplotlib plots of simulation results: JCT CDF and utilisation over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from suanli.sched.simulator import SimResult


def plot_results(results: list[SimResult], folder: Path | str) -> list[Path]:
    """Write `jct_cdf.png` and `utilization.png` (one line per result) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        jct = np.sort([(s.finish_s - s.job.submit_s) / 3600 for s in result.jobs if s.finish_s is not None])
        ax.plot(jct, np.arange(1, len(jct) + 1) / max(1, len(jct)), label=result.policy)
    ax.set(xscale="log", xlabel="JCT (h)", ylabel="fraction of jobs", title="JCT CDF")
    ax.legend()
    cdf = folder / "jct_cdf.png"
    fig.tight_layout()
    fig.savefig(cdf, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        if result.utilization_curve:
            t, u = zip(*result.utilization_curve, strict=True)
            ax.step(np.array(t) / 3600, u, where="post", label=result.policy)
    ax.set(xlabel="time (h)", ylabel="accelerators busy", ylim=(0, 1.05), title="Utilisation")
    ax.legend()
    util = folder / "utilization.png"
    fig.tight_layout()
    fig.savefig(util, dpi=120)
    plt.close(fig)
    return [cdf, util]
