"""Files a benchmark writes: the PNG chart, JSON and Markdown (and the up-front check that they can be)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from vit_edge.errors import InputError

if TYPE_CHECKING:
    from vit_edge.bench import BenchReport

def plot(report: BenchReport, path) -> None:
    """A PNG readable at a glance: throughput bars (with speedup) and latency p50 with p90/p99 whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = report.settings["batches"]
    names = list(dict.fromkeys(r.name for r in report.results))
    by_key = {(r.name, r.batch): r for r in report.results}
    height = 0.8 / len(batches)
    colors = plt.get_cmap("tab10").colors
    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(13, 1.6 + 0.7 * len(names) * len(batches) ** 0.5),
                                        constrained_layout=True)
    for j, batch in enumerate(batches):
        ys = [i + (j - (len(batches) - 1) / 2) * height for i in range(len(names))]
        rows = [by_key[n, batch] for n in names]
        bars = ax_tp.barh(ys, [r.throughput for r in rows], height, color=colors[j % 10], label=f"batch {batch}")
        for bar, r in zip(bars, rows):
            ax_tp.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {r.throughput:.1f}  ({r.speedup:.2f}x)",
                       va="center", fontsize=9)
        p50 = np.array([r.p50_ms for r in rows])
        whiskers = np.array([[0.0] * len(rows), [r.p99_ms - r.p50_ms for r in rows]])
        ax_lat.barh(ys, p50, height, color=colors[j % 10], xerr=whiskers, capsize=3, label=f"batch {batch}")
        ax_lat.plot([r.p90_ms for r in rows], ys, "k|", markersize=10)
        for y, r in zip(ys, rows):
            ax_lat.text(r.p99_ms, y, f" p50 {r.p50_ms:.1f} ms", va="center", fontsize=9)
    labels = [f"{n}\n{by_key[n, batches[0]].target}/{by_key[n, batches[0]].precision}" for n in names]
    for ax in (ax_tp, ax_lat):
        ax.set_yticks(range(len(names)), labels)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.25)
    ax_lat.tick_params(labelleft=False)
    ax_tp.set_xlabel("throughput, images/s (higher is better; speedup vs the first)")
    ax_lat.set_xlabel("latency, ms per call (lower is better): bar p50, tick p90, whisker p99")
    spread = [r.p99_ms for r in report.results] + [r.p50_ms for r in report.results]
    if max(spread) > 20 * min(spread):  # batch 1 next to batch 32, or a slow reference: linear hides the rest
        ax_lat.set_xscale("log")
        ax_lat.set_xlabel("latency, ms per call, log scale: bar p50, tick p90, whisker p99")
    if len(batches) > 1:
        ax_tp.legend(loc="best", fontsize=9)
    m, s = report.machine, report.settings
    fig.suptitle(f"vit-edge bench on {m['cpu']} ({m['cores']} cores), batch {', '.join(map(str, batches))}, "
                 f"threads {s['threads'] or 'default'}, load average {m['load_before']}", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_outputs(json_path=None, markdown_path=None, plot_path=None) -> None:
    """Fail before measuring, not after, when a report cannot be written where asked."""
    from pathlib import Path

    if plot_path is not None and Path(plot_path).suffix.lower() != ".png":
        raise InputError(f"--plot writes a PNG: name it *.png (got {plot_path})")
    for path in (json_path, markdown_path, plot_path):
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise InputError(f"cannot write {path}: it is a directory", hint="give a file name")
        if not path.parent.resolve().is_dir():
            raise InputError(f"cannot write {path}: its directory does not exist", hint="create it first")


def write_reports(report: BenchReport, *, json_path=None, markdown_path=None, plot_path=None) -> None:
    """Write the requested reports atomically (a failure leaves no half-written file)."""
    from pathlib import Path

    from vit_edge.artifact import write_json, write_text

    check_outputs(json_path, markdown_path, plot_path)
    if json_path:
        write_json(json_path, report.to_dict())
    if markdown_path:
        write_text(markdown_path, report.markdown())
    if plot_path:
        import tempfile

        path = Path(plot_path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
        os.close(fd)
        try:
            plot(report, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
