"""The one runtime API: every input form, top-k with labels, and no torch when running ONNX."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO
from vit_edge import runtimes
from vit_edge.data import load_images
from vit_edge.errors import InputError
from vit_edge.preprocess import image_to_array


@pytest.fixture(scope="module")
def digit_images():
    images = load_images("digits:test")
    return images.items[:6], images.labels[:6]


def test_every_input_form_gives_the_same_logits(demo_onnx, digit_images, tmp_path):
    runtime = runtimes.load(demo_onnx)
    pil_images, _ = digit_images
    paths = []
    for i, im in enumerate(pil_images):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    from_pil = runtime.predict(pil_images)
    from_paths = runtime.predict(paths)
    from_arrays = runtime.predict([np.asarray(im) for im in pil_images])  # HW uint8 (grayscale)
    from_rgb_arrays = runtime.predict([np.asarray(im.convert("RGB")) for im in pil_images])
    nchw = np.stack([image_to_array(im, runtime.preprocess) for im in pil_images])
    from_batch = runtime.predict(nchw)
    assert from_pil.shape == (6, 10)
    for other in (from_paths, from_arrays, from_rgb_arrays, from_batch):
        np.testing.assert_array_equal(other, from_pil)
    single = runtime.predict(paths[0])
    np.testing.assert_array_equal(single[0], from_pil[0])


def test_topk_names_labels_and_matches_the_truth(demo_onnx, digit_images):
    runtime = runtimes.load(demo_onnx)
    images, labels = digit_images
    best = runtime.topk(images, k=3)
    assert [row[0][0] for row in best] == [str(y) for y in labels]
    for row in best:
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_torch_reference_runtime_matches_onnx(demo_onnx, digit_images):
    images, _ = digit_images
    onnx_logits = runtimes.load(demo_onnx).predict(images)
    torch_logits = runtimes.reference("demo").predict(images)
    assert float(np.abs(onnx_logits - torch_logits).max()) <= 1e-4


def test_bare_onnx_file_carries_its_preprocessing(demo_onnx, tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes((demo_onnx / "model.onnx").read_bytes())  # no manifest beside it
    runtime = runtimes.load(lone)
    assert runtime.preprocess.input_size == (32, 32)
    assert runtime.labels[7] == "7"


@pytest.mark.parametrize("bad, needle", [
    (np.zeros((2, 3, 16, 16), np.float32), "shape"),
    (np.zeros((0, 3, 32, 32), np.float32), "empty"),
    (np.zeros((1, 3, 32, 32), np.int64), "floating"),
    (np.full((1, 3, 32, 32), np.nan, np.float32), "nan"),
    ([], "empty"),
])
def test_wrong_input_raises_typed_error(demo_onnx, bad, needle):
    runtime = runtimes.load(demo_onnx)
    with pytest.raises(InputError) as info:
        runtime.predict(bad)
    assert needle in info.value.one_line().lower()


def test_running_an_onnx_artifact_imports_no_torch(demo_onnx):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from vit_edge import runtimes\n"
        f"rt = runtimes.load({str(demo_onnx)!r})\n"
        "from PIL import Image\n"
        "out = rt.predict(Image.new('L', (8, 8), 128))\n"
        "assert out.shape == (1, 10), out.shape\n"
        "heavy = [m for m in ('torch', 'timm', 'transformers', 'nncf', 'onnxscript') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
