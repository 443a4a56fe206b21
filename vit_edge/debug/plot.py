"""``--plot FILE.png``: SNR against depth, the noise each point adds, the first divergence and the culprits."""

from __future__ import annotations

from pathlib import Path

from vit_edge.debug.measure import CAP_DB


def plot(report, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = report.points
    xs = [p["position"] for p in points]
    fig = Figure(figsize=(max(8.0, min(24.0, len(points) / 8)), 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    snr = [_y(p["snr_db"]) for p in points]
    ax.plot(xs, snr, "-", color="tab:blue", lw=1.4, label=f"SNR as run ({report.candidate['precision']})")
    if "f32" in report.candidate["runs"]:
        ax.plot(xs, [_y(p["f32"]["snr_db"]) for p in points], "--", color="tab:cyan", lw=1.0,
                label="SNR at f32 (quantization alone)")
    added = [(p["position"], _y(p["local_snr_db"])) for p in points if p["injects"] and p["local_snr_db"] is not None
             and p["local_snr_db"] < CAP_DB]
    if added:
        ax.scatter(*zip(*added), s=10, color="tab:gray", alpha=0.6, label="noise each point adds (as an SNR)")
    ax.axhline(report.noise_floor_db, color="tab:green", lw=0.8, ls=":",
               label=f"noise floor {report.noise_floor_db:.1f} dB")
    broken = [p["position"] for p in points if p["snr_db"] is None]
    if broken:
        ax.scatter(broken, [0.0] * len(broken), marker="x", color="red", s=24, label="non-finite values")
    first = report.first_divergence
    if first is not None:
        ax.axvline(first["position"], color="tab:orange", lw=1.0, label=f"first divergence: {first['label']}")
    standing = [c for c in report.culprits if c["stands_out"]] or report.culprits[:1]
    for rank, culprit in enumerate(standing, 1):
        mine = [p for p in points if p["node"] == culprit["onnx_node"]]
        if mine:
            worst = min(mine, key=lambda p: _y(p["snr_db"]))
            ax.scatter([worst["position"]], [_y(worst["snr_db"])], s=80, facecolors="none", edgecolors="red", lw=1.6)
            ax.annotate(f"#{rank} {culprit.get('where') or culprit['name']}", (worst["position"], _y(worst["snr_db"])),
                        xytext=(6, -14), textcoords="offset points", fontsize=8, color="red")
    ax.set_xlabel("comparison point (graph order: depth)")
    ax.set_ylabel("dB")
    ax.set_ylim(bottom=min(-2.0, min(snr) - 2.0), top=min(CAP_DB + 5, max(snr + [report.noise_floor_db]) + 8))
    ax.set_title(f"{Path(report.candidate['path']).name} ({report.candidate['target']} {report.candidate['precision']})"
                 f" against FP32 on {report.images} images", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def _y(snr) -> float:
    return 0.0 if snr is None else float(snr)
