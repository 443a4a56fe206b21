"""The OpenVINO runtime's speed settings change nothing but speed: static shapes per batch size, the
throughput hint's split of a batch across streams. (Speed itself is measured by benchmarks/, not here.)"""

from __future__ import annotations

import numpy as np
import pytest

from vit_edge import runtimes
from vit_edge.data import load_images
from vit_edge.runtimes.openvino import MAX_STATIC_SHAPES

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def ov_demo(tmp_path_factory):
    from vit_edge.convert import convert

    out = tmp_path_factory.mktemp("ovspeed") / "fp32"
    convert(None, target="openvino", precision="fp32", out=out)
    return out


@pytest.fixture(scope="module")
def digits(ov_demo):
    runtime = runtimes.load(ov_demo)
    batch, labels = next(load_images("digits:test").batches(runtime.preprocess, batch_size=40))
    return batch, labels


def _dynamic_reference(ov_demo, batch):
    """The IR compiled as stored (dynamic batch), f32, one request: what the runtime must reproduce."""
    compiled = ov.Core().compile_model(str(ov_demo / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(batch)[0]


def test_static_shapes_per_batch_size_match_the_dynamic_model(ov_demo, digits):
    batch, labels = digits
    runtime = runtimes.load(ov_demo)
    assert runtime.info()["static_shapes"] == [[1, 3, 32, 32]]  # compiled at load: the first image is ready
    reference = _dynamic_reference(ov_demo, batch)
    sizes = [1, 3, 8, 5, 7, 2, 8, 3]  # more distinct sizes than MAX_STATIC_SHAPES: the rest run dynamic
    start = 0
    for size in sizes:
        got = runtime.run(batch[start:start + size])
        np.testing.assert_allclose(got, reference[start:start + size], rtol=0, atol=1e-4)
        start += size
    shapes = runtime.info()["static_shapes"]
    assert [s[0] for s in shapes] == [1, 3, 8, 5, 7][:MAX_STATIC_SHAPES]
    assert (runtime.run(batch).argmax(1) == labels).mean() >= 0.95


def test_throughput_hint_splits_a_batch_across_streams_with_the_same_result(ov_demo, digits):
    batch, _ = digits
    runtime = runtimes.load(ov_demo, hint="throughput", threads=2)
    streams = runtime.info()["streams"]
    assert streams == int(runtime.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) >= 1
    got = runtime.run(batch[:9])
    np.testing.assert_allclose(got, _dynamic_reference(ov_demo, batch[:9]), rtol=0, atol=1e-4)
    if streams > 1:  # the parts of 9 images ran as their own static shapes, e.g. 5 + 4 on two streams
        parts = [len(p) for p in np.array_split(np.arange(9), streams)]
        assert sorted(s[0] for s in runtime.info()["static_shapes"]) == sorted({1, *parts})
    latency = runtimes.load(ov_demo, hint="latency")
    assert latency.info()["streams"] == 1
    np.testing.assert_allclose(latency.run(batch[:9]), got, rtol=0, atol=1e-4)


def test_compiled_models_are_cached_where_asked_and_not_when_off(ov_demo, digits, tmp_path, monkeypatch):
    batch, _ = digits
    cache = tmp_path / "cache"
    cached = runtimes.load(ov_demo, cache_dir=str(cache))
    assert cached.info()["cache_dir"] == str(cache) and list(cache.glob("*.blob"))  # the batch-1 compile
    again = runtimes.load(ov_demo, cache_dir=str(cache))  # served from the cache: same numbers
    np.testing.assert_allclose(again.run(batch[:1]), cached.run(batch[:1]), rtol=0, atol=1e-6)
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    assert runtimes.load(ov_demo).info()["cache_dir"] is None
    assert runtimes.load(ov_demo, cache_dir=False).info()["cache_dir"] is None


def test_run_many_keeps_batches_in_flight_and_in_order(ov_demo, digits):
    """A stream of batches under the throughput hint: each request a whole batch, several in flight, the
    outputs in input order and equal to ``run``'s; a consumer that stops early leaves the runtime usable."""
    batch, labels = digits
    runtime = runtimes.load(ov_demo, hint="throughput", threads=2)
    reference = _dynamic_reference(ov_demo, batch)
    chunks = [batch[i:i + 8] for i in range(0, len(batch), 8)]  # 5 batches of 8
    fed = []

    def stream():
        for chunk in chunks:
            fed.append(len(chunk))
            yield chunk

    got = []
    for out in runtime.run_many(stream()):
        got.append(out)
        if runtime.info()["streams"] > 1 and len(got) == 1:
            assert len(fed) >= 2  # the second batch was started before the first one's output came back
    np.testing.assert_allclose(np.concatenate(got), reference, rtol=0, atol=1e-4)
    assert [len(o) for o in got] == [8] * 5
    stopped = runtime.run_many(iter(chunks))
    next(stopped)
    stopped.close()  # the requests still in flight are waited for and given back
    np.testing.assert_allclose(runtime.run(batch[:8]), reference[:8], rtol=0, atol=1e-4)
    with pytest.raises(Exception, match="NaN or Inf"):
        list(runtime.run_many([batch[:8], np.full_like(batch[:8], np.nan)]))
    assert (np.concatenate(list(runtime.run_many(chunks))).argmax(1) == labels).mean() >= 0.95
