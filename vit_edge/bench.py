"""``bench``: latency, throughput and peak memory of artifacts (or a MODEL spec run in torch), measured fairly.

Fair means: every artifact runs in its own worker process (so peak memory is its own, thread pools do not
fight, and an ONNX or OpenVINO artifact runs without torch, as it would in an app), and the workers take
turns in round-robin rounds, so a burst of noise from other processes hits all of them alike. Throughput
is the median over rounds; latency percentiles pool every call. The first artifact is the reference that
the ``speedup`` column divides by.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from vit_edge.bench_noise import load_1min, noise_warnings
from vit_edge.errors import InputError, VitEdgeError, flags_apply

log = logging.getLogger("vit_edge")

DEFAULT_BATCHES = (1, 8)
DEFAULT_DURATION = 10.0  # measured seconds per artifact and batch size, split over the rounds
DEFAULT_ROUNDS = 5
WARMUP_CALLS = 3  # first calls allocate buffers and pick kernels; never measured
_COMMAND_TIMEOUT = 900  # seconds a worker may take to load or to finish one round before we give up


@dataclass
class BenchResult:
    """One artifact at one batch size."""

    name: str
    target: str
    precision: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # images per second, median over rounds
    speedup: float  # throughput / the reference's throughput at the same batch size
    cpu_ms_per_image: float  # CPU time (all threads) per image, median over rounds: robust to a busy machine
    peak_memory_mb: float  # the worker process's peak resident memory (whole process: interpreter included)
    load_seconds: float
    calls: int
    rounds: int
    throughput_rounds: list = field(default_factory=list)


@dataclass
class BenchReport:
    results: list
    settings: dict
    machine: dict
    warnings: list = field(default_factory=list)  # why the numbers may be noisy (noise_warnings)

    def to_dict(self) -> dict:
        return {"settings": self.settings, "machine": self.machine, "warnings": self.warnings,
                "results": [asdict(r) for r in self.results]}

    def _cells(self) -> tuple[list, list]:
        """The table's head and rows, shared by the terminal and the Markdown renderings. ``img/s range`` is
        the slowest and fastest round: a wide one says the median next to it is noisy."""
        head = ["artifact", "backend", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "img/s range", "speedup",
                "CPU ms/img", "peak MB"]
        rows = [[r.name, f"{r.target}/{r.precision}", str(r.batch), f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}",
                 f"{r.p99_ms:.2f}", f"{r.throughput:.1f}",
                 f"{min(r.throughput_rounds):.1f}-{max(r.throughput_rounds):.1f}" if r.throughput_rounds else "-",
                 f"{r.speedup:.2f}x", f"{r.cpu_ms_per_image:.3f}", f"{r.peak_memory_mb:.0f}"]
                for r in self.results]
        return head, rows

    def table(self) -> str:
        """A fixed-width text table for the terminal."""
        head, rows = self._cells()
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])

    def markdown(self) -> str:
        s, m = self.settings, self.machine
        head, rows = self._cells()
        return "\n".join([
            "# vit-edge bench", "",
            f"Machine: {m['cpu']} ({m['cores']} cores), {m['system']}, load average before the run "
            f"{m['load_before']}, after {m.get('load_after', '?')}.", "",
            f"Settings: threads {s['threads'] or 'backend default'}, device {s['device'] or 'default'}, "
            f"{s['rounds']} alternating rounds of {s['seconds_per_round']:.2f} s per artifact and batch size "
            f"after {WARMUP_CALLS} warm-up calls; throughput is the median over rounds (img/s range: the slowest "
            f"and fastest round), speedup is relative to the first artifact, CPU ms/img is the worker's CPU time "
            f"(all threads) per image.", "",
            *[f"Warning: {w}" for w in self.warnings], *([""] if self.warnings else []),
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *["| " + " | ".join(r) + " |" for r in rows],
            ""])


# ---------------------------------------------------------------- the worker process (one per artifact)


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: unlike wall time, other programs on the machine barely move it."""
    times = os.times()
    return times.user + times.system


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. Linux: VmHWM, which starts afresh at exec (getrusage's
    maxrss would carry over the size of the parent that forked us); macOS: maxrss; Windows: psutil."""
    import sys

    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB
    except (OSError, StopIteration):
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / (1 << 20)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _worker(conn, artifact, options: dict) -> None:
    """Load one artifact, then answer ("run", batch, seconds) with per-call latencies until ("stop",).

    ``artifact`` is a path or MODEL spec for ``runtimes.load_any``, or a picklable callable that returns an
    object with ``run(batch)``, ``info()`` and ``preprocess`` (benchmarks use this for hand-made baselines)."""
    try:
        from vit_edge import runtimes

        warnings = _capture_warnings()
        started = time.perf_counter()
        runtime = artifact(**options) if callable(artifact) else runtimes.load_any(artifact, **options)
        info = {**runtime.info(), "load_seconds": time.perf_counter() - started, "warnings": warnings}
        conn.send(("ready", info))
        inputs = {}
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            _, batch, seconds = command
            if batch not in inputs:
                h, w = runtime.preprocess.input_size
                rng = np.random.default_rng(batch)
                inputs[batch] = rng.standard_normal((batch, runtime.preprocess.channels, h, w), dtype=np.float32)
                for _ in range(WARMUP_CALLS):
                    runtime.run(inputs[batch])
            latencies = []
            cpu_started = _cpu_seconds()
            deadline = time.perf_counter() + seconds
            while True:  # at least one call per round, however short the round
                t0 = time.perf_counter()
                runtime.run(inputs[batch])
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                if t1 >= deadline:
                    break
            conn.send(("latencies", latencies, _cpu_seconds() - cpu_started, _peak_rss_mb()))
    except VitEdgeError as exc:
        conn.send(("error", type(exc).__name__, exc.one_line(), exc.exit_code))
    except Exception as exc:  # a backend failure: report it as one line rather than a dead pipe
        from vit_edge.errors import first_line

        conn.send(("error", type(exc).__name__, f"{artifact}: {type(exc).__name__}: {first_line(exc)}", 2))
    finally:
        conn.close()


def _capture_warnings() -> list:
    """The worker's vit-edge warnings (random weights, assumed preprocessing), kept for the parent to print
    in its own log format: a spawned process has no handler, so they would come out bare or not at all."""
    import logging

    caught: list = []

    class Keep(logging.Handler):
        def emit(self, record):
            caught.append(record.getMessage())

    logger = logging.getLogger("vit_edge")
    logger.addHandler(Keep(logging.WARNING))
    logger.propagate = False
    return caught


class _Worker:
    def __init__(self, context, artifact, options: dict):
        self.artifact = artifact if isinstance(artifact, str) else getattr(artifact, "__name__", "runner")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, artifact, options), daemon=True)
        self.process.start()
        child.close()
        self.info = self._receive("ready")[1]
        for message in self.info.pop("warnings", None) or []:
            log.warning("%s: %s", self.artifact, message)

    def run(self, batch: int, seconds: float) -> tuple[list, float, float]:
        """Per-call latencies, CPU seconds used, and peak memory so far, for one round."""
        self.conn.send(("run", batch, seconds))
        return self._receive("latencies")[1:]

    def _receive(self, kind: str):
        if not self.conn.poll(_COMMAND_TIMEOUT):
            raise VitEdgeError(f"{self.artifact}: the benchmark worker did not answer in {_COMMAND_TIMEOUT} s")
        try:
            message = self.conn.recv()
        except EOFError:
            raise VitEdgeError(f"{self.artifact}: the benchmark worker died (exit code {self.process.exitcode})",
                               hint="the backend crashed; try vit-edge predict on it to see why") from None
        if message[0] == "error":
            error = VitEdgeError(message[2])
            error.exit_code = message[3]
            raise error
        assert message[0] == kind, message
        return message

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# ---------------------------------------------------------------- the benchmark


def check_settings(artifacts, batches, threads, duration, rounds) -> None:
    """Reject what cannot be measured before any worker starts."""
    if not artifacts:
        raise InputError("nothing to benchmark", hint="pass one or more artifacts or MODEL specs")
    if not batches or any(int(b) != b or b < 1 for b in batches):
        raise InputError(f"batch sizes must be positive integers (got {list(batches)})")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1 (got {threads})")
    if not (duration > 0 and math.isfinite(duration)):
        raise InputError(f"--duration must be a positive number of seconds (got {duration})")
    if rounds < 1:
        raise InputError(f"--rounds must be at least 1 (got {rounds})")


def benchmark(artifacts, *, batches=DEFAULT_BATCHES, threads: int | None = None, duration: float = DEFAULT_DURATION,
              rounds: int = DEFAULT_ROUNDS, device: str | None = None, names=None, options=None,
              source_options: dict | None = None) -> BenchReport:
    """Measure ``artifacts`` (paths or MODEL specs, or runner factories as :func:`_worker` describes; the
    first is the reference) at each batch size.

    ``duration`` seconds of measurement per artifact and batch size are split into ``rounds`` rounds that
    alternate between the artifacts. ``options`` go to every ``runtimes.load`` (e.g. ``hint``);
    ``source_options`` (checkpoint, input_size, ... as ``convert`` takes them) build the one MODEL spec.
    """
    import multiprocessing

    artifacts = [a if callable(a) else str(a) for a in artifacts]
    batches = [int(b) for b in batches]
    check_settings(artifacts, batches, threads, duration, rounds)
    names = list(names) if names else _short_names(artifacts)
    load_options = dict(options or {})
    if threads:
        load_options["threads"] = threads
    if device:
        load_options["device"] = device
    per_item = _source_options(artifacts, source_options)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch or thread pools inherited
    load_at_start = load_1min()
    machine = machine_info()
    workers = []
    try:
        for artifact, extra in zip(artifacts, per_item):
            workers.append(_Worker(context, artifact, {**load_options, **extra}))
        per_round = duration / rounds
        latencies = {(i, b): [] for i in range(len(workers)) for b in batches}
        rates = {(i, b): [] for i in range(len(workers)) for b in batches}
        cpu_ms = {(i, b): [] for i in range(len(workers)) for b in batches}
        peaks = [0.0] * len(workers)
        for batch in batches:
            for _ in range(rounds):
                for i, worker in enumerate(workers):
                    calls, cpu, peak = worker.run(batch, per_round)
                    latencies[i, batch] += calls
                    rates[i, batch].append(batch * len(calls) / sum(calls))
                    cpu_ms[i, batch].append(1000.0 * cpu / (batch * len(calls)))
                    peaks[i] = max(peaks[i], peak)
    finally:
        for worker in workers:
            worker.close()
    machine["load_after"] = _load_average()
    results = []
    for batch in batches:
        reference = float(np.median(rates[0, batch]))
        for i, worker in enumerate(workers):
            ms = np.asarray(latencies[i, batch]) * 1000.0
            p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
            throughput = float(np.median(rates[i, batch]))
            info = worker.info
            results.append(BenchResult(
                name=names[i], target=info["target"], precision=info["precision"],
                batch=batch, p50_ms=p50, p90_ms=p90, p99_ms=p99, throughput=throughput,
                speedup=throughput / reference, cpu_ms_per_image=float(np.median(cpu_ms[i, batch])),
                peak_memory_mb=peaks[i], load_seconds=info["load_seconds"],
                calls=len(ms), rounds=rounds, throughput_rounds=[float(r) for r in rates[i, batch]]))
    settings = {"artifacts": [a if isinstance(a, str) else names[i] for i, a in enumerate(artifacts)], "batches": batches, "threads": threads, "device": device,
                "duration": duration, "rounds": rounds, "seconds_per_round": duration / rounds,
                "warmup_calls": WARMUP_CALLS}
    return BenchReport(results, settings, machine, noise_warnings(results, load_at_start, machine["cores"]))


def _source_options(artifacts, source_options) -> list:
    """Per item, the options it is loaded with: all of them for the one MODEL spec; for artifacts only the
    preprocessing ones (and ``preprocess_from``), when no MODEL spec takes them -- an artifact that records no
    preprocessing then needs only its input size, since speed does not depend on the statistics."""
    from vit_edge.runtimes import PREPROCESS_OPTIONS, is_artifact

    given = {k: v for k, v in (source_options or {}).items() if v not in (None, False)}
    specs = [a for a in artifacts if isinstance(a, str) and not is_artifact(a)]
    feeding = set(PREPROCESS_OPTIONS) | {"preprocess_from"}
    for_artifacts = {"need": ("input_size",)}
    if given and not specs and set(given) <= feeding:
        for_artifacts.update(given)
    elif given and len(specs) != 1:
        raise InputError(f"{flags_apply(given)} to the MODEL spec among the items, and there must be exactly one",
                         got=f"{len(specs)} MODEL specs",
                         hint="bench one MODEL spec with them (convert the others to artifacts first)")
    return [given if specs and a is specs[0] else for_artifacts if isinstance(a, str) else {} for a in artifacts]


def _short_names(artifacts) -> list:
    """Readable names: the directory (or file) name, made unique by its parent where two collide."""
    names = []
    for artifact in artifacts:
        if callable(artifact):
            names.append(getattr(artifact, "__name__", type(artifact).__name__))
            continue
        path = artifact.rstrip("/")
        base = os.path.basename(path)
        if base in ("model.onnx", "model.xml", "model.engine"):
            base = os.path.basename(os.path.dirname(path)) or base
        names.append(base or artifact)
    return [str(artifact) if names.count(name) > 1 else name for artifact, name in zip(artifacts, names)]


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not available on every platform
        return "unknown"


def machine_info() -> dict:
    """What the numbers were measured on: CPU model, cores, OS, load, library versions."""
    from vit_edge.artifact import library_versions

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        # a VM often reports only "AMD EPYC": family and model tell the generation (25/17 is Zen 4, whose
        # AVX-512 runs at half the INT8 rate of Zen 5's), and with it what a roof or a speed means
        cpu = fields.get("model name", cpu)
        if "cpu family" in fields and "model" in fields:
            cpu += f" (family {fields['cpu family']}, model {fields['model']})"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_before": _load_average(),
            "versions": library_versions("onnxruntime", "openvino", "torch", "numpy")}
