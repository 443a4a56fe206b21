"""Loading never runs code hidden in a file: pickles only with weights_only=True (unless the user opts out
with --trust-checkpoint), ONNX external data only from the model's own folder."""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np
import pytest

from conftest import MODELS, assert_one_line_error, run_cli

from vit_edge.checkpoints import read_state_dict
from vit_edge.errors import ArtifactError, CheckpointError

ENCODER = f"{MODELS / 'encoder_vit.py'}:make_model"


class _CreatesFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")  # unpickling this calls open(marker, "w")


@pytest.fixture()
def evil_checkpoint(tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict(), "x": _CreatesFile(marker)}, path)
    return path, marker


def test_payload_is_live(evil_checkpoint):
    """The control: an unsafe torch.load of this file does run its code (so the next tests can fail)."""
    import torch

    path, marker = evil_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_code_in_pickle_never_runs(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match="could run code"):
        read_state_dict(path)
    assert not marker.exists()
    result = run_cli("convert", ENCODER, "--checkpoint", path, "--out", path.parent / "out")
    assert_one_line_error(result, 2, "refused", "--trust-checkpoint")
    assert not marker.exists()
    assert not (path.parent / "out").exists()


@pytest.fixture()
def pickle_with_objects(tmp_path):
    """A common, harmless training checkpoint that weights_only refuses: the state dict plus argparse args."""
    import torch

    from vit_edge.sources import load_model

    state = load_model(ENCODER).module.state_dict()
    path = tmp_path / "train.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, path)
    return path, state


def test_trust_checkpoint_is_an_explicit_opt_out(pickle_with_objects, caplog):
    from vit_edge.sources import load_model

    path, state = pickle_with_objects
    with pytest.raises(CheckpointError, match="refused"):
        load_model(ENCODER, checkpoint=path)
    with caplog.at_level(logging.WARNING, logger="vit_edge"):
        loaded = load_model(ENCODER, checkpoint=path, trust_checkpoint=True)
    assert any("weights_only=False" in r.getMessage() for r in caplog.records)
    for key, value in state.items():
        assert np.array_equal(loaded.module.state_dict()[key].numpy(), value.numpy()), key


def test_trust_checkpoint_flag_reaches_the_loader(pickle_with_objects, tmp_path):
    """With --trust-checkpoint the same file is read (with a warning): it then fails for a reason only a
    read file can have, not fitting the torchvision architecture it is passed for."""
    path, _ = pickle_with_objects
    result = run_cli("convert", "torchvision:vit_b_16", "--checkpoint", path, "--trust-checkpoint",
                     "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "does not fit the model")
    assert "WARNING: loaded" in result.err and "--trust-checkpoint" in result.err
    assert not (tmp_path / "out").exists()


def _external_copy(demo_onnx, folder, location="weights.bin"):
    import onnx

    folder.mkdir()
    model = onnx.load(str(demo_onnx / "model.onnx"))
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location)  # tensors over 1 kB: all the weights
    return folder / "model.onnx"


def test_onnx_with_confined_external_data_converts_to_one_file(demo_onnx, tmp_path):
    from vit_edge import runtimes

    path = _external_copy(demo_onnx, tmp_path / "ext")
    assert os.path.getsize(path) < 100_000  # the weights really are outside
    result = run_cli("convert", path, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "model.onnx"]
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    original, copied = runtimes.load(demo_onnx), runtimes.load(tmp_path / "out")
    np.testing.assert_array_equal(copied.predict(batch), original.predict(batch))
    np.testing.assert_array_equal(runtimes.load(path).predict(batch), original.predict(batch))


def test_onnx_external_data_symlink_out_of_folder_is_refused(demo_onnx, tmp_path):
    """A plain file name that is a symlink to elsewhere escapes the folder just like ``..`` does."""
    from vit_edge import runtimes

    path = _external_copy(demo_onnx, tmp_path / "ext")
    (tmp_path / "elsewhere.bin").write_bytes((path.parent / "weights.bin").read_bytes())
    (path.parent / "weights.bin").unlink()
    (path.parent / "weights.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(ArtifactError, match="points outside"):
        runtimes.load(path)
    assert_one_line_error(run_cli("convert", path, "--out", tmp_path / "out"), 2, "points outside")
