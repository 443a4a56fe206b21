"""vit-edge bench: real runs on the demo ONNX (short, never timed), report files, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not


@pytest.fixture(scope="module")
def bench_run(demo_onnx, tmp_path_factory):
    """One short bench of the demo ONNX against itself and its torch reference, with every report."""
    out = tmp_path_factory.mktemp("bench")
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    result = run_cli("bench", demo_onnx, demo_onnx / "model.onnx", "demo", "--batch", "1,3", "--duration", "0.3",
                     "--rounds", "2", "--threads", "1", "--json", paths["json"], "--markdown", paths["markdown"],
                     "--plot", paths["plot"])
    assert result.code == 0, result.err
    return result, paths


def test_bench_json_has_sane_numbers(bench_run):
    _, paths = bench_run
    report = json.loads(paths["json"].read_text())
    results = report["results"]
    assert [(r["batch"], r["target"]) for r in results] == [(1, "onnx"), (1, "onnx"), (1, "torch"),
                                                            (3, "onnx"), (3, "onnx"), (3, "torch")]
    for r in results:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"], r
        assert r["throughput"] > 0 and r["calls"] >= r["rounds"] == 2, r
        assert len(r["throughput_rounds"]) == 2
        assert r["peak_memory_mb"] > 10  # a Python process with a backend loaded, in MB
        assert r["speedup"] == pytest.approx(r["throughput"] / next(
            x["throughput"] for x in results if x["batch"] == r["batch"]))
    assert [r["speedup"] for r in results if r["name"] == results[0]["name"]] == [1.0, 1.0]
    # the same artifact passed twice (directory and file) gets two distinguishable names
    assert len({r["name"] for r in results}) == 3
    # the torch worker imported torch, the ONNX ones did not: their peak memory shows it
    onnx_peak = max(r["peak_memory_mb"] for r in results if r["target"] == "onnx")
    torch_peak = min(r["peak_memory_mb"] for r in results if r["target"] == "torch")
    assert torch_peak > onnx_peak
    assert report["settings"]["threads"] == 1 and report["machine"]["cores"] >= 1


def test_bench_prints_table_and_writes_markdown_and_png(bench_run):
    result, paths = bench_run
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["artifact", "backend", "batch"]
    assert sum("onnx/fp32" in line for line in lines) == 4 and sum("torch/fp32" in line for line in lines) == 2
    assert "1.00x" in lines[2]
    md = paths["markdown"].read_text()
    assert "| artifact | backend | batch |" in md and md.count("| onnx/fp32 |") == 4
    with Image.open(paths["plot"]) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 200


def test_bench_table_shows_the_spread_over_rounds_and_cpu_time(bench_run):
    """Each row shows its slowest and fastest round around the median, and CPU ms per image; the busy-machine
    warning is there exactly when a row's rounds disagree by more than 1.5x or the load exceeded the cores."""
    result, paths = bench_run
    lines = result.out.splitlines()
    head = lines[0]
    assert "img/s range" in head and "CPU ms/img" in head, head
    report = json.loads(paths["json"].read_text())
    for line, r in zip(lines[2:], report["results"]):
        cells = line.split()
        median, spread, cpu_ms = float(cells[-5]), cells[-4], float(cells[-2])
        low, high = map(float, spread.split("-"))
        assert low <= median <= high, line
        assert (low, high) == (round(min(r["throughput_rounds"]), 1), round(max(r["throughput_rounds"]), 1))
        assert cpu_ms > 0 and cpu_ms == round(r["cpu_ms_per_image"], 3), line
        # one worker's CPU time per image cannot be far below its wall time per image with one thread
        assert r["cpu_ms_per_image"] < 10 * 1000 / r["throughput"], r
    md = paths["markdown"].read_text()
    assert "| img/s range |" in md and "| CPU ms/img |" in md
    cores = report["machine"]["cores"]
    busy = float(report["machine"]["load_before"].split()[0]) > cores or any(
        max(r["throughput_rounds"]) / min(r["throughput_rounds"]) > 1.5 for r in report["results"])
    assert len(report["warnings"]) == (1 if busy else 0), report["warnings"]
    assert ("warning: the machine was busy" in result.err) == busy, result.err


def test_noise_warnings_say_why_the_machine_looked_busy():
    from vit_edge.bench import BenchResult
    from vit_edge.bench_noise import noise_warnings

    def row(name, rounds):
        return BenchResult(name=name, target="onnx", precision="fp32", batch=8, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0,
                           throughput=sorted(rounds)[len(rounds) // 2], speedup=1.0, cpu_ms_per_image=0.5,
                           peak_memory_mb=90.0, load_seconds=0.1, calls=10, rounds=len(rounds),
                           throughput_rounds=rounds)

    steady, shaken = row("a", [100.0, 104.0, 98.0]), row("b", [100.0, 40.0, 101.0])
    assert noise_warnings([steady], load_at_start=0.5, cores=2) == []
    (spread,) = noise_warnings([steady, shaken], load_at_start=0.5, cores=2)
    assert "the fastest round of b at batch 8 was 2.5x its slowest" in spread
    (loaded,) = noise_warnings([steady], load_at_start=3.7, cores=2)
    assert "load average was 3.70 on 2 cores" in loaded and "fastest round" not in loaded
    (both,) = noise_warnings([steady, shaken], load_at_start=3.7, cores=2)  # warned once, both reasons
    assert "load average" in both and "2.5x" in both


def test_onnx_artifact_runs_without_torch(demo_onnx):
    """An app that only runs an ONNX artifact must never import torch (cold start and install size)."""
    code = ("import sys, numpy as np; from vit_edge import runtimes; r = runtimes.load(sys.argv[1]); "
            "h, w = r.preprocess.input_size; r.run(np.zeros((1, r.preprocess.channels, h, w), np.float32)); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(demo_onnx)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("args, needle", [
    (["no/such/artifact.onnx"], "no such artifact"),
    (["{onnx}", "--batch", "0"], "--batch"),
    (["{onnx}", "--batch", "1,x"], "--batch"),
    (["{onnx}", "--duration", "0"], "--duration"),
    (["{onnx}", "--threads", "0"], "--threads"),
    (["{onnx}", "--plot", "{tmp}/chart.jpg"], "png"),
    (["{onnx}", "--json", "{tmp}/missing/dir/b.json"], "directory does not exist"),
])
def test_bench_bad_input_is_one_line_exit_2(demo_onnx, tmp_path, args, needle):
    args = [a.format(onnx=demo_onnx, tmp=tmp_path) for a in args]
    result = run_cli("bench", *args, "--duration", "0.1") if "--duration" not in args else run_cli("bench", *args)
    assert_one_line_error(result, 2, needle)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bench_without_artifacts_is_a_usage_error():
    assert_one_line_error(run_cli("bench"), 2, "artifacts")
