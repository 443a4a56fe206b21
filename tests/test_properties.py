"""Property-based tests: whatever sizes, modes, dtypes and batch shapes come in, preprocessing and runtime
input validation give correctly shaped, finite inputs (and outputs) or a typed VitEdgeError, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vit_edge.errors import VitEdgeError
from vit_edge.preprocess import INTERPOLATIONS, PreprocessConfig, as_batch, image_to_array, open_image

# Every mode Pillow can create an image in.
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "RGBX", "RGBa",
         "La", "I;16", "I;16B", "I;16L", "I;16N"]
# What a file can carry, by format (the modes each encoder accepts).
FILE_MODES = {"PNG": ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"], "TIFF": ["1", "L", "RGB", "CMYK", "F", "I"],
              "JPEG": ["L", "RGB", "CMYK"], "WEBP": ["RGB", "RGBA"], "BMP": ["1", "L", "P", "RGB"],
              "GIF": ["L", "P"]}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def pil_images(draw, modes=MODES):
    from PIL import Image

    mode = draw(st.sampled_from(modes))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    base = Image.new(mode, size)
    raw = draw(st.binary(min_size=len(base.tobytes()), max_size=len(base.tobytes())))
    im = Image.frombytes(mode, size, raw)  # arbitrary pixel bytes: NaN/Inf floats, negative ints, ...
    if mode == "P" and draw(st.booleans()):
        im.info["transparency"] = draw(st.integers(0, 255))
    return im


@st.composite
def configs(draw):
    h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    return PreprocessConfig(input_size=(h, w), interpolation=draw(st.sampled_from(INTERPOLATIONS)),
                            crop_pct=draw(st.floats(0.05, 1.0)), resize_mode=draw(st.sampled_from(["shorter", "squash"])),
                            mean=tuple(draw(st.floats(-2, 2)) for _ in range(3)),
                            std=tuple(draw(st.floats(0.01, 4)) for _ in range(3)))


def _check_chw(arr, cfg):
    assert arr.dtype == np.float32
    assert arr.shape == (3, *cfg.input_size)
    assert np.isfinite(arr).all()


@SETTINGS
@given(im=pil_images(), cfg=configs())
def test_any_pil_image_becomes_the_model_input(im, cfg):
    _check_chw(image_to_array(im, cfg), cfg)


@SETTINGS
@given(data=st.data())
def test_any_image_file_decodes_to_the_model_input(data, tmp_path):
    fmt = data.draw(st.sampled_from(sorted(FILE_MODES)))
    im = data.draw(pil_images(FILE_MODES[fmt]))
    cfg = data.draw(configs())
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    _check_chw(image_to_array(open_image(path), cfg), cfg)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes_as_an_image_file_are_a_typed_error_or_an_image(data, tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(data)
    cfg = PreprocessConfig(input_size=(8, 8))
    try:
        im = open_image(path)
    except VitEdgeError:
        return
    _check_chw(image_to_array(im, cfg), cfg)


DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]


@st.composite
def any_arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 40), min_size=0, max_size=5).map(tuple))
    if np.prod(shape, dtype=np.int64) > 40_000:
        shape = shape[:2]
    return draw(arrays(dtype, shape))


@pytest.fixture(scope="module")
def runtime(demo_onnx):
    from vit_edge import runtimes

    return runtimes.load(demo_onnx)


def _predict_or_typed_error(runtime, value):
    try:
        out = runtime.predict(value)
    except VitEdgeError as exc:
        assert exc.one_line() and "\n" not in exc.one_line()
        return None
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 10
    assert np.isfinite(out).all()
    return out


@SETTINGS
@given(value=any_arrays())
def test_any_array_is_predicted_or_refused(runtime, value):
    out = _predict_or_typed_error(runtime, value)
    if out is not None:
        expected_n = value.shape[0] if value.ndim == 4 else 1
        assert out.shape[0] == expected_n


@SETTINGS
@given(batch=st.integers(1, 5), channels=st.integers(1, 4), h=st.integers(1, 40), w=st.integers(1, 40),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]), poison=st.sampled_from([None, np.nan, np.inf]))
def test_nchw_batches_are_checked(runtime, batch, channels, h, w, dtype, poison):
    value = np.zeros((batch, channels, h, w), dtype)
    if poison is not None:
        value.flat[-1] = poison
    out = _predict_or_typed_error(runtime, value)
    valid = (channels, h, w) == (3, 32, 32) and poison is None
    assert (out is not None) == valid
    if valid:
        assert out.shape == (batch, 10)


@SETTINGS
@given(items=st.lists(st.one_of(pil_images(), any_arrays()), min_size=0, max_size=4))
def test_lists_of_mixed_inputs(runtime, items):
    out = _predict_or_typed_error(runtime, items)
    if out is not None:
        assert out.shape[0] == len(items)


@SETTINGS
@given(im=pil_images(), cfg=configs())
def test_as_batch_of_one_image_matches_image_to_array(im, cfg):
    np.testing.assert_array_equal(as_batch(im, cfg)[0], image_to_array(im, cfg))
