"""One Runtime shared by 8 threads: 10,000 batch-1 predictions identical to sequential ones, and no memory
growth after warm-up (benchmarks/endurance.py measures the same at larger scale)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("endurance", REPO / "benchmarks" / "endurance.py")
endurance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(endurance)


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def shared_runtime(request, demo_onnx, tmp_path_factory):
    from vit_edge import runtimes

    if request.param == "onnx":
        return runtimes.load(demo_onnx)
    if importlib.util.find_spec("vit_edge.convert.openvino") is None:
        pytest.skip("the OpenVINO target is not merged yet")
    from vit_edge.convert import convert

    out = convert(demo_onnx / "model.onnx", target="openvino", out=tmp_path_factory.mktemp("ov") / "ov").out
    return runtimes.load(out)


def test_threads_match_sequential_and_memory_is_flat(shared_runtime):
    result = endurance.endurance(shared_runtime, threads=8, predictions=10_000, warmup=1_000)
    assert result["predictions"] == 10_000
    assert result["mismatches"] == 0, result
    assert result["rss_growth"] < 0.05, str(result)
