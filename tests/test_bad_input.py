"""The bad-input matrix: every case is a row; the CLI must answer with one ``error:`` line naming the problem
and the fix, exit 2 (no traceback, nothing written), and the Python API with a typed VitEdgeError.

``docs/ERRORS.md`` is generated from these tables (``python tests/test_bad_input.py``) and a test checks it
is current, so the documentation cannot drift from what is tested.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS, REPO, assert_one_line_error, run_cli

DOC = REPO / "docs" / "ERRORS.md"
DEMO_WEIGHTS = REPO / "vit_edge" / "demo" / "digits_vit.safetensors"
ENCODER = f"{MODELS / 'encoder_vit.py'}:make_model"


@dataclass(frozen=True)
class CliCase:
    id: str
    command: str  # convert | validate | predict | bench | build-engine
    input: str  # what the user did, for docs/ERRORS.md
    args: tuple  # {d}: the folder of bad files, {demo}: the demo ONNX artifact, {enc}: the encoder model
    message: tuple  # fragments the error line must contain (problem and fix)
    code: int = 2


CLI_CASES = [
    # ---------------------------------------------------------------- convert: MODEL
    CliCase("unknown-model", "convert", "misspelled bare model name",
            ("convert", "vit_tiny_patch16_22"), ("unknown MODEL", "did you mean timm:vit_tiny_patch16_224")),
    CliCase("timm-typo", "convert", "misspelled timm model", ("convert", "timm:vit_tiny_patch16_22"),
            ("timm has no model", "did you mean timm:vit_tiny_patch16_224")),
    CliCase("torchvision-typo", "convert", "misspelled torchvision model", ("convert", "torchvision:vit_b_1"),
            ("torchvision has no", "did you mean torchvision:vit_b_16")),
    CliCase("python-typo", "convert", "file.py:callable naming a missing callable",
            ("convert", f"{MODELS / 'encoder_vit.py'}:make_modle"), ("has no callable", "did you mean make_model")),
    CliCase("python-missing", "convert", "file.py:callable whose file is missing",
            ("convert", "{d}/nothere.py:make"), ("not found", "file.py:callable")),
    CliCase("python-no-callable", "convert", "a .py file without :callable", ("convert", "{d}/model.py"),
            ("names a Python file but no callable", "model.py:make_model")),
    CliCase("model-dir", "convert", "a folder that is not a Hugging Face model", ("convert", "{d}/notimages"),
            ("directory without config.json", "Hugging Face model directory")),
    CliCase("hf-no-config", "convert", "hf:DIR without config.json", ("convert", "hf:{d}/notimages"),
            ("has no config.json", "Hugging Face model directory")),
    CliCase("model-unknown-file", "convert", "a file of unknown kind as MODEL", ("convert", "{d}/notes.txt"),
            ("cannot tell what kind of model", "timm:NAME")),
    CliCase("onnx-missing", "convert", "missing .onnx", ("convert", "{d}/missing.onnx"), ("not found", "path")),
    CliCase("onnx-dir", "convert", "a folder named like an .onnx", ("convert", "{d}/dir.onnx"),
            ("is a directory",)),
    CliCase("onnx-empty", "convert", "empty (0-byte) .onnx", ("convert", "{d}/empty.onnx"),
            ("not an ONNX model", "re-export")),
    CliCase("onnx-garbage", "convert", ".onnx holding random bytes", ("convert", "{d}/garbage.onnx"),
            ("ONNX", "re-export")),
    CliCase("onnx-truncated", "convert", "truncated .onnx", ("convert", "{d}/truncated.onnx"),
            ("not a readable ONNX file", "truncated")),
    CliCase("onnx-external-dotdot", "convert", "ONNX external data at ../secret.bin",
            ("convert", "{d}/ext/dotdot.onnx"), ("points outside the model's folder", "beside the .onnx")),
    CliCase("onnx-external-absolute", "convert", "ONNX external data at an absolute path",
            ("convert", "{d}/ext/absolute.onnx"), ("points outside the model's folder", "beside the .onnx")),
    # ---------------------------------------------------------------- convert: --checkpoint
    CliCase("ckpt-missing", "convert", "--checkpoint file missing",
            ("convert", "{enc}", "--checkpoint", "{d}/missing.pth"), ("not found", "--checkpoint path")),
    CliCase("ckpt-dir", "convert", "--checkpoint is a folder", ("convert", "{enc}", "--checkpoint", "{d}"),
            ("is a directory", "weights file inside")),
    CliCase("ckpt-empty", "convert", "0-byte checkpoint", ("convert", "{enc}", "--checkpoint", "{d}/empty.pth"),
            ("empty (0 bytes)", "re-save")),
    CliCase("ckpt-garbage", "convert", "checkpoint of random bytes",
            ("convert", "{enc}", "--checkpoint", "{d}/garbage.pth"), ("corrupt", "re-save")),
    CliCase("ckpt-truncated", "convert", "truncated .pth", ("convert", "{enc}", "--checkpoint", "{d}/truncated.pth"),
            ("corrupt or truncated", "re-save")),
    CliCase("safetensors-truncated", "convert", "truncated .safetensors",
            ("convert", "{enc}", "--checkpoint", "{d}/truncated.safetensors"), ("corrupt or truncated", "re-save")),
    CliCase("ckpt-other-architecture", "convert", "checkpoint of another architecture",
            ("convert", "{enc}", "--checkpoint", str(DEMO_WEIGHTS)),
            ("does not fit the model", "missing keys", "another architecture")),
    CliCase("ckpt-unsafe-pickle", "convert", "pickle that would run code on load",
            ("convert", "{enc}", "--checkpoint", "{d}/evil.pth"), ("could run code", "refused", "--trust-checkpoint")),
    CliCase("ckpt-for-demo", "convert", "--checkpoint with the built-in demo",
            ("convert", "demo", "--checkpoint", str(DEMO_WEIGHTS)), ("does not apply", "drop --checkpoint")),
    CliCase("ckpt-torchscript", "convert", "a TorchScript archive as --checkpoint",
            ("convert", "{enc}", "--checkpoint", "{d}/odd/scripted.pt"), ("TorchScript archive", "torch.jit.load")),
    CliCase("ckpt-suffix-lies", "convert", "a torch.save file named .safetensors",
            ("convert", "{enc}", "--checkpoint", "{d}/odd/pickle.safetensors"),
            ("is a torch.save zip archive, not a safetensors file", "rename it to .pth")),
    CliCase("ckpt-is-onnx", "convert", "an ONNX model as --checkpoint",
            ("convert", "{enc}", "--checkpoint", "{d}/odd/model.pth"), ("is an ONNX model", "as MODEL")),
    CliCase("ckpt-is-numpy", "convert", "a NumPy array saved as .pth", ("convert", "{enc}", "--checkpoint",
                                                                         "{d}/odd/array.pth"),
            ("is a NumPy array file", "state dict")),
    CliCase("ckpt-head-classes", "convert", "checkpoint whose head has another class count",
            ("convert", "timm:test_vit", "--checkpoint", "{d}/odd/test_vit_7.safetensors"),
            ("does not fit the model", "classifier has 7 classes", "pass --num-classes 7")),
    CliCase("num-classes-demo", "convert", "--num-classes for the demo", ("convert", "--num-classes", "5"),
            ("--num-classes does not apply to a demo model", "timm, hf, torchvision")),
    CliCase("num-classes-zero", "convert", "--num-classes 0", ("convert", "timm:test_vit", "--num-classes", "0"),
            ("--num-classes", "x>=1")),
    # ---------------------------------------------------------------- convert: option syntax and conflicts
    CliCase("input-size-syntax", "convert", "--input-size 224x", ("convert", "--input-size", "224x"),
            ("--input-size", "N or H,W")),
    CliCase("input-size-range", "convert", "--input-size 4", ("convert", "--input-size", "4"),
            ("--input-size", "between 8 and 8192")),
    CliCase("mean-count", "convert", "--mean with two values for a 3-channel model", ("convert", "--mean", "0.5,0.5"),
            ("--mean has 2 values", "takes 3 input channels", "or one for every channel")),
    CliCase("mean-syntax", "convert", "--mean a,b,c", ("convert", "--mean", "a,b,c"),
            ("--mean", "comma-separated numbers, one per input channel")),
    CliCase("channels-contradict-model", "convert", "--channels 1 for a model whose first convolution takes 3",
            ("convert", "--channels", "1"), ("does not run with --channels 1", "takes 3 input channels")),
    CliCase("onnx-channels", "convert", "--channels 1 for an ONNX whose input has 3 channels",
            ("convert", "{demo}/model.onnx", "--channels", "1"), ("takes 3-channel input", "--channels 3")),
    CliCase("onnx-input-size", "convert", "--input-size 64 for an ONNX fixed at 32x32",
            ("convert", "{d}/fixed32.onnx", "--input-size", "64"), ("takes 32x32 input", "--input-size 32,32")),
    CliCase("python-package-missing", "convert", "file.py:callable importing a package that is nowhere",
            ("convert", "{d}/needs_pkg.py:build"), ("ModuleNotFoundError", "packages beside the file are importable")),
    CliCase("input-size-demo", "convert", "--input-size 64 for the demo (built for 32x32)",
            ("convert", "--input-size", "64"), ("cannot run at input size 64x64", "drop --input-size", "32x32")),
    CliCase("std-zero", "convert", "--std with a zero", ("convert", "--std", "0,0.5,0.5"),
            ("--std", "must be positive")),
    CliCase("interpolation-typo", "convert", "--interpolation lanczos", ("convert", "--interpolation", "lanczos"),
            ("--interpolation", "lanczos", "bicubic")),
    CliCase("target-typo", "convert", "--target openvin", ("convert", "--target", "openvin"),
            ("--target", "openvino")),
    CliCase("calib-without-int8", "convert", "--calib with --precision fp32",
            ("convert", "--calib", "{d}/notimages"), ("only apply to --precision int8", "add --precision int8")),
    CliCase("task-on-onnx", "convert", "--task features on an ONNX classifier",
            ("convert", "{demo}/model.onnx", "--task", "features"), ("does not apply", "drop --task")),
    CliCase("int8-no-calib", "convert", "--precision int8 without --calib", ("convert", "--precision", "int8"),
            ("needs calibration images", "--calib")),
    CliCase("calib-not-images", "convert", "--calib folder of non-images",
            ("convert", "--precision", "int8", "--calib", "{d}/notimages"), ("none of its 2 files", "--calib")),
    CliCase("calib-empty", "convert", "--calib empty folder", ("convert", "--precision", "int8", "--calib", "{d}/empty"),
            ("holds no files",)),
    CliCase("calib-missing", "convert", "--calib path missing",
            ("convert", "--target", "openvino", "--precision", "int8", "--calib", "{d}/nothere"),
            ("no such file or folder",)),
    CliCase("accuracy-drop-unlabelled", "convert", "--max-accuracy-drop with unlabelled data",
            ("convert", "--precision", "int8", "--calib", "{d}/flat", "--max-accuracy-drop", "1"),
            ("needs labelled validation data", "--validate")),
    CliCase("labels-missing", "convert", "--labels file missing", ("convert", "--labels", "{d}/missing.txt"),
            ("cannot read labels file",)),
    CliCase("labels-json-deep", "convert", "--labels JSON nested 100,000 deep",
            ("convert", "--labels", "{d}/odd/deep.json"), ("nests too deeply", "keyed 0..N-1")),
    CliCase("labels-json-key", "convert", "--labels JSON dict with a non-integer key",
            ("convert", "--labels", "{d}/odd/key.json"), ("key 'x' is not a class index",)),
    CliCase("labels-json-null", "convert", "--labels JSON null", ("convert", "--labels", "{d}/odd/null.json"),
            ("holds a JSON null", "a list")),
    CliCase("labels-json-number", "convert", "--labels JSON number", ("convert", "--labels", "{d}/odd/number.json"),
            ("holds a JSON number", "a list")),
    CliCase("labels-json-gap", "convert", "--labels JSON dict with a gap (no key 4)",
            ("convert", "--labels", "{d}/odd/gap.json"), ("keys are not 0..9", "missing [4]", "wrong classes")),
    CliCase("labels-json-negative", "convert", "--labels JSON dict keyed -1..8",
            ("convert", "--labels", "{d}/odd/negative.json"), ("keys are not 0..9", "out of range [-1]")),
    CliCase("labels-json-upper", "convert", "--labels x.JSON holding 3 names (read as JSON, not one line)",
            ("convert", "--labels", "{d}/odd/three.JSON"), ("labels do not match", "got 3")),
    CliCase("labels-count", "convert", "--labels with 3 names for a 10-class model",
            ("convert", "--labels", "{d}/three-labels.txt"), ("labels do not match", "expected 10 names", "got 3")),
    CliCase("out-exists", "convert", "--out exists, no --force", ("convert", "--out", "{demo}"),
            ("already exists", "--force")),
    CliCase("out-under-file", "convert", "--out inside a path that is a file",
            ("convert", "--out", "{d}/notes.txt/sub/out"), ("cannot create", "writable --out")),
    CliCase("out-empty", "convert", "--out ''", ("convert", "--out", ""), ("--out is empty",)),
    CliCase("out-dot-force", "convert", "--out . --force", ("convert", "--out", ".", "--force"),
            ("is the current folder", "name a new folder")),
    CliCase("out-name-long", "convert", "--out with a 300-byte name", ("convert", "--out", "{d}/" + "n" * 300),
            ("300-byte name", "at most 223 bytes", "shorter --out")),
    CliCase("out-path-long", "convert", "--out longer than PATH_MAX",
            ("convert", "--out", "{d}/" + "/".join(["p" * 200] * 22)), ("-byte path", "PATH_MAX is 4096")),
    CliCase("out-is-file", "convert", "--out is a file", ("convert", "--out", "{d}/notes.txt", "--force"),
            ("not a directory", "another --out")),
    CliCase("force-not-artifact", "convert", "--force onto a folder vit-edge did not write",
            ("convert", "--out", "{d}/notimages", "--force"), ("not a vit-edge artifact", "choose another --out")),
    CliCase("force-out-is-calib", "convert", "--force with --out the --calib folder",
            ("convert", "--precision", "int8", "--calib", "{d}/flat", "--out", "{d}/flat", "--force"),
            ("is the --calib input", "never replaces an input")),
    CliCase("force-out-holds-model", "convert", "--force onto the artifact holding the MODEL file",
            ("convert", "{demo}/model.onnx", "--target", "openvino", "--out", "{demo}", "--force"),
            ("holds the MODEL input", "never replaces an input")),
    CliCase("force-out-inside-calib", "convert", "--force onto an artifact inside the --calib folder",
            ("convert", "--precision", "int8", "--calib", "{d}", "--out", "{d}/noartifact", "--force"),
            ("is inside the --calib input", "choose another --out")),
    # ---------------------------------------------------------------- validate
    CliCase("candidate-missing", "validate", "candidate path missing",
            ("validate", "{d}/nothere", "--data", "digits:test"), ("not found", "artifact")),
    CliCase("candidate-no-manifest", "validate", "folder without manifest.json as candidate",
            ("validate", "{d}/notimages", "--data", "digits:test"), ("without manifest.json", "--out directory")),
    CliCase("manifest-corrupt", "validate", "manifest.json that is not JSON",
            ("validate", "{d}/badmanifest", "--data", "digits:test"), ("unreadable manifest",)),
    CliCase("manifest-artifact-missing", "validate", "manifest naming a deleted model file",
            ("validate", "{d}/noartifact", "--data", "digits:test"), ("missing", "re-run vit-edge convert")),
    CliCase("candidate-truncated", "validate", "truncated .onnx candidate",
            ("validate", "{d}/truncated.onnx", "--data", "digits:test"), ("not a readable ONNX", "truncated")),
    CliCase("data-missing", "validate", "--data path missing", ("validate", "{demo}", "--data", "{d}/nothere"),
            ("no such file or folder", "image folder")),
    CliCase("data-not-images", "validate", "--data folder of non-images",
            ("validate", "{demo}", "--data", "{d}/notimages"), ("no decodable images", "folder of images")),
    CliCase("data-empty-folder", "validate", "--data empty folder", ("validate", "{demo}", "--data", "{d}/empty"),
            ("holds no files", "folder of images")),
    CliCase("data-split-typo", "validate", "--data digits:tset", ("validate", "{demo}", "--data", "digits:tset"),
            ("unknown digits split", "digits:test")),
    CliCase("data-wrong-array", "validate", "--data .npy of the wrong shape",
            ("validate", "{demo}", "--data", "{d}/wrong.npy"), ("does not match the model input", "expected (N, 3, 32, 32)")),
    CliCase("data-is-onnx", "validate", "--data pointing at a model file",
            ("validate", "{demo}", "--data", "{demo}/model.onnx"), ("expected a folder of images",)),
    CliCase("checkpoint-without-reference", "validate", "--checkpoint without --reference MODEL",
            ("validate", "{demo}", "--data", "digits:test", "--checkpoint", "{d}/full.pth"),
            ("--checkpoint applies to --reference MODEL", "pass --reference MODEL")),
    CliCase("checkpoint-for-artifact-reference", "validate", "--checkpoint with --reference an artifact",
            ("validate", "{demo}", "--data", "digits:test", "--reference", "{demo}", "--checkpoint", "{d}/full.pth"),
            ("--checkpoint applies to a MODEL spec, not to the artifact", "drop them")),
    CliCase("data-npz-labels-long", "validate", "--data .npz with more labels than images",
            ("validate", "{demo}", "--data", "{d}/odd/labels-long.npz"),
            ("'labels' and 'images' differ in length", "expected 4 labels", "got 6")),
    CliCase("data-npz-labels-short", "validate", "--data .npz with fewer labels than images",
            ("validate", "{demo}", "--data", "{d}/odd/labels-short.npz"), ("differ in length", "got 2")),
    CliCase("reference-other-size", "validate", "--reference a model built for another input size",
            ("validate", "{demo}", "--data", "digits:test", "--reference", "timm:test_vit"),
            ("runs at 160x160, the candidate at 32x32", "candidate's input size")),
    CliCase("manifest-no-preprocess", "validate", "manifest without preprocess",
            ("validate", "{d}/odd/no-preprocess", "--data", "digits:test"),
            ("'preprocess' should be an object, not missing",)),
    CliCase("manifest-null-seed", "validate", "manifest with seed null",
            ("validate", "{d}/odd/null-seed", "--data", "digits:test"), ("'seed' should be an integer, not null",)),
    CliCase("manifest-no-labels", "validate", "manifest without labels",
            ("validate", "{d}/odd/no-labels", "--data", "digits:test"), ("'labels' is missing",)),
    CliCase("manifest-huge-input", "validate", "manifest asking for a 100000x100000 input",
            ("validate", "{d}/odd/huge-input", "--data", "digits:test"),
            ("'preprocess'", "input size must be at most 8192")),
    CliCase("threshold-range", "validate", "--min-agreement 2", ("validate", "{demo}", "--data", "digits:test",
                                                                  "--min-agreement", "2"),
            ("--min-agreement", "0<=x<=1")),
    CliCase("reference-python-code", "validate", "manifest naming a Python file (that would run) as its reference",
            ("validate", "{d}/pyref", "--data", "digits:test"), ("never runs code", "--reference")),
    CliCase("reference-kind-lies", "validate", "manifest naming a Python file under another kind",
            ("validate", "{d}/pyref-as-timm", "--data", "digits:test"), ("never runs code", "--reference")),
    CliCase("reference-hf-code", "validate", "manifest naming a Hugging Face folder with its own code",
            ("validate", "{d}/hfref", "--data", "digits:test"), ("own code (auto_map)", "--reference")),
    CliCase("reference-pickle", "validate", "manifest naming a pickle checkpoint for its reference",
            ("validate", "{d}/pickleref", "--data", "digits:test"), ("never unpickles", ".safetensors")),
    CliCase("reference-model-kwargs", "validate", "manifest model_kwargs that would load a file",
            ("validate", "{d}/kwargsref", "--data", "digits:test"), ("checkpoint_path", "--reference")),
    CliCase("model-swapped", "validate", "model.onnx swapped after the convert",
            ("validate", "{d}/swapped", "--data", "digits:test"),
            ("not the one the manifest records", "re-run vit-edge convert")),
    CliCase("model-unhashed", "validate", "manifest without the model's sha256",
            ("validate", "{d}/unhashed", "--data", "digits:test"), ("records no sha256", "re-run vit-edge convert")),
    CliCase("manifest-newer", "validate", "manifest of a newer format", ("validate", "{d}/newer", "--data",
                                                                          "digits:test"),
            ("newer than this vit-edge reads", "upgrade vit-edge")),
    CliCase("report-unwritable", "validate", "--json into a missing folder",
            ("validate", "{demo}", "--data", "digits:test", "--limit", "2", "--json", "{d}/nothere/r.json"),
            ("cannot write", "folder exists")),
    # ---------------------------------------------------------------- bench
    CliCase("bench-missing", "bench", "artifact file missing", ("bench", "{d}/nothere.onnx"),
            ("no such artifact file",)),
    CliCase("bench-foreign-any-size", "bench", "an ONNX another tool wrote with a dynamic height and width",
            ("bench", "{d}/anysize.onnx"), ("input size cannot be read from the graph", "--input-size")),
    CliCase("validate-foreign-no-stats", "validate", "an ONNX another tool wrote, no statistics",
            ("validate", "{d}/fixed32.onnx", "--data", "digits:test", "--reference", "demo"),
            ("records no preprocessing", "--preprocess-from MODEL")),
    CliCase("bench-truncated", "bench", "truncated .onnx", ("bench", "{d}/truncated.onnx"),
            ("not a readable ONNX", "truncated")),
    CliCase("bench-no-manifest", "bench", "folder without manifest.json", ("bench", "{d}/notimages"),
            ("without manifest.json", "--out directory")),
    CliCase("bench-model-typo", "bench", "misspelled MODEL spec", ("bench", "timm:vit_tiny_patch16_22"),
            ("did you mean timm:vit_tiny_patch16_224",)),
    CliCase("bench-batch", "bench", "--batch 0", ("bench", "{demo}", "--batch", "0"), ("--batch", "positive integers")),
    CliCase("bench-batch-syntax", "bench", "--batch 1;8", ("bench", "{demo}", "--batch", "1;8"),
            ("--batch", "comma-separated")),
    CliCase("bench-batch-letters", "bench", "--batch a,b", ("bench", "{demo}", "--batch", "a,b"),
            ("--batch", "comma-separated positive integers")),
    CliCase("bench-checkpoint-no-model", "bench", "--checkpoint with artifacts only",
            ("bench", "{demo}", "--checkpoint", "{d}/full.pth"), ("--checkpoint applies to the MODEL spec", "0 MODEL specs")),
    CliCase("bench-duration", "bench", "--duration 0", ("bench", "{demo}", "--duration", "0"), ("--duration", "x>0")),
    CliCase("bench-report-unwritable", "bench", "--json into a missing folder",
            ("bench", "{demo}", "--json", "{d}/nothere/r.json"), ("cannot write", "create it first")),
    # ---------------------------------------------------------------- build-engine
    CliCase("engine-missing-dir", "build-engine", "folder missing", ("build-engine", "{d}/nothere"),
            ("no manifest.json", "--out directory")),
    CliCase("engine-not-tensorrt", "build-engine", "an ONNX --out folder", ("build-engine", "{demo}"),
            ("not a TensorRT one", "--target tensorrt")),
    CliCase("engine-batch", "build-engine", "--batch 4:2:1", ("build-engine", "{demo}", "--batch", "4:2:1"),
            ("--batch", "MIN <= OPT <= MAX")),
    CliCase("engine-batch-zero", "build-engine", "--batch 0", ("build-engine", "{demo}", "--batch", "0"),
            ("--batch", "MIN,OPT,MAX", "1,8,32")),
    CliCase("engine-batch-letters", "build-engine", "--batch a,b", ("build-engine", "{demo}", "--batch", "a,b"),
            ("--batch", "MIN,OPT,MAX", "1,8,32")),
    CliCase("engine-workspace", "build-engine", "--workspace 0", ("build-engine", "{demo}", "--workspace", "0"),
            ("--workspace", "x>=0.01")),
    # ---------------------------------------------------------------- predict (images)
    CliCase("image-zero-bytes", "predict", "0-byte image", ("predict", "{demo}", "{d}/zero.png"),
            ("not a decodable image",)),
    CliCase("image-bomb", "predict", "decompression bomb (13000x13000 PNG, 24 kB)", ("predict", "{demo}", "{d}/bomb.png"),
            ("image too large", "downscale")),
    CliCase("predict-checkpoint-artifact", "predict", "--checkpoint with an artifact",
            ("predict", "{demo}", "{d}/flat/red.png", "--checkpoint", "{d}/full.pth"),
            ("--checkpoint applies to a MODEL spec, not to the artifact", "carries its own weights")),
    CliCase("predict-input-size-artifact", "predict", "--input-size with an artifact",
            ("predict", "{demo}", "{d}/flat/red.png", "--input-size", "64"),
            ("--input-size applies to a MODEL spec", "preprocessing")),
    CliCase("predict-foreign-no-stats", "predict", "an ONNX another tool wrote (no vit-edge metadata), no statistics",
            ("predict", "{d}/fixed32.onnx", "{d}/flat/red.png"),
            ("records no preprocessing", "mean, std", "--preprocess-from MODEL")),
    CliCase("predict-preprocess-from-spec", "predict", "--preprocess-from with a MODEL spec",
            ("predict", "demo", "{d}/flat/red.png", "--preprocess-from", "demo"),
            ("--preprocess-from applies to an artifact", "declares its own preprocessing")),
    CliCase("predict-preprocess-from-recorded", "predict", "--preprocess-from with a vit-edge artifact",
            ("predict", "{demo}", "{d}/flat/red.png", "--preprocess-from", "demo"),
            ("--preprocess-from applies to a MODEL spec or an artifact that records no preprocessing",
             "records the preprocessing it was converted with")),
    CliCase("image-missing", "predict", "image path missing", ("predict", "{demo}", "{d}/nothere.png"),
            ("no such image file",)),
    CliCase("predict-swapped", "predict", "an artifact whose model.onnx was swapped",
            ("predict", "{d}/swapped", "{d}/flat/red.png"), ("not the one the manifest records",)),
    CliCase("debug-python-code", "debug", "manifest naming a Python file (that would run) as its reference",
            ("debug", "{d}/pyref", "--data", "digits:test"), ("never runs code", "--reference")),
    CliCase("image-is-dir", "predict", "a folder holding no files", ("predict", "{demo}", "{d}/empty"),
            ("holds no image files", "folder of them")),
    CliCase("predict-nothing-decodes", "predict", "a folder whose only image file does not decode",
            ("predict", "{demo}", "{d}/notimages"), ("none of the 1 image files found decodes",)),
    CliCase("image-fifo", "predict", "a FIFO named like an image", ("predict", "{demo}", "{d}/odd/fifo/pipe.png"),
            ("a FIFO, not an image file", "regular image file")),
    CliCase("image-aspect", "predict", "a 10000x1 PNG (114 bytes; resizing it cost 2.7 GB)",
            ("predict", "{demo}", "{d}/odd/strip.png"), ("aspect ratio too extreme", "at most 100:1", "10000x1")),
]


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, demo_onnx) -> Path:
    """A folder of broken inputs, made once: each file is broken in one way."""
    import onnx
    import torch
    from onnx import TensorProto, helper
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    (d / "empty.onnx").write_bytes(b"")
    (d / "garbage.onnx").write_bytes(b"\x08\x07 not a model")
    good = (demo_onnx / "model.onnx").read_bytes()
    (d / "truncated.onnx").write_bytes(good[: len(good) // 3])
    (d / "dir.onnx").mkdir()
    (d / "empty").mkdir()
    (d / "notimages").mkdir()
    (d / "notimages" / "a.txt").write_text("hello")
    (d / "notimages" / "b.jpg").write_bytes(b"not a jpeg")
    (d / "notes.txt").write_text("notes")
    (d / "flat").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(d / "flat" / "red.png")
    (d / "three-labels.txt").write_text("cat\ndog\nbird\n")
    (d / "model.py").write_text("x = 1\n")
    (d / "needs_pkg.py").write_text("from not_a_package_anywhere.vit import ViT\n\n\ndef build():\n    return ViT()\n")
    fixed = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 32, 32])])
    onnx.save(helper.make_model(fixed), str(d / "fixed32.onnx"))
    any_size = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    onnx.save(helper.make_model(any_size), str(d / "anysize.onnx"))
    (d / "empty.pth").write_bytes(b"")
    (d / "garbage.pth").write_bytes(b"\x80\x02garbage that is no pickle")
    state = {k: v for k, v in torch.nn.Linear(4, 2).state_dict().items()}
    torch.save(state, d / "full.pth")
    full = (d / "full.pth").read_bytes()
    (d / "truncated.pth").write_bytes(full[: len(full) // 2])
    weights = DEMO_WEIGHTS.read_bytes()
    (d / "truncated.safetensors").write_bytes(weights[:1000])
    torch.save({"state_dict": state, "hook": _RunsCode(str(d / "PWNED"))}, d / "evil.pth")
    (d / "badmanifest").mkdir()
    (d / "badmanifest" / "manifest.json").write_text("{not json")
    shutil.copytree(demo_onnx, d / "noartifact")
    (d / "noartifact" / "model.onnx").unlink()
    shutil.copytree(demo_onnx, d / "escape")
    manifest = json.loads((d / "escape" / "manifest.json").read_text())
    (d / "escape" / "manifest.json").write_text(json.dumps({**manifest, "artifact": "../truncated.onnx"}))
    _tampered_artifacts(d, demo_onnx)
    np.save(d / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    (d / "zero.png").write_bytes(b"")
    Image.new("1", (13000, 13000)).save(d / "bomb.png")  # 169 Mpx: between Pillow's warning and its error
    (d / "ext").mkdir()
    (d / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    for name, location in (("dotdot", "../secret.bin"), ("absolute", str(d / "secret.bin"))):
        weight = helper.make_tensor("w", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=location)
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
        onnx.save(helper.make_model(graph), str(d / "ext" / f"{name}.onnx"))
    _odd_inputs(d / "odd", demo_onnx)
    return d


def _odd_inputs(d: Path, demo_onnx: Path) -> None:
    """Issue 16's inputs: odd labels files, images, checkpoints, manifests."""
    import os

    import timm
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    d.mkdir()
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    for name, data in (("key", {"0": "a", "x": "b"}), ("null", None), ("number", 3),
                       ("gap", {str(i): str(i) for i in range(11) if i != 4}),
                       ("negative", {str(i - 1): str(i) for i in range(10)})):
        (d / f"{name}.json").write_text(json.dumps(data))
    (d / "three.JSON").write_text('["cat", "dog", "bird"]')
    (d / "fifo").mkdir()
    os.mkfifo(d / "fifo" / "pipe.png")
    Image.new("RGB", (10000, 1), (120, 10, 200)).save(d / "strip.png")
    linear = torch.nn.Linear(4, 2)
    torch.jit.save(torch.jit.script(linear), str(d / "scripted.pt"))
    torch.save(linear.state_dict(), d / "pickle.safetensors")
    shutil.copy(demo_onnx / "model.onnx", d / "model.pth")
    np.save(d / "array.npy", np.zeros(3))
    (d / "array.npy").rename(d / "array.pth")
    save_file(timm.create_model("test_vit", num_classes=7).state_dict(), str(d / "test_vit_7.safetensors"))
    images = np.zeros((4, 3, 32, 32), np.float32)
    np.savez(d / "labels-long.npz", images=images, labels=np.arange(6))
    np.savez(d / "labels-short.npz", images=images, labels=np.arange(2))
    manifest = json.loads((demo_onnx / "manifest.json").read_text())
    huge = {**manifest["preprocess"], "input_size": [100_000, 100_000]}
    for name, change in (("no-preprocess", {"preprocess": None}), ("null-seed", {"seed": None}),
                         ("no-labels", {"labels": None}), ("huge-input", {"preprocess": huge})):
        shutil.copytree(demo_onnx, d / name)
        edited = {**manifest, **change}
        if name.startswith("no-"):
            edited.pop(name[3:])
        (d / name / "manifest.json").write_text(json.dumps(edited))


def _tampered_artifacts(d: Path, demo_onnx: Path) -> None:
    """Copies of the demo artifact whose manifest names what must not run, or whose files were swapped."""
    import onnx
    from onnx import numpy_helper

    (d / "helper.py").write_text(f"open({str(d / 'PWNED')!r}, 'w').write('ran')\n\ndef make():\n    pass\n")
    (d / "hfcode").mkdir()
    (d / "hfcode" / "config.json").write_text(json.dumps({"model_type": "vit", "auto_map": {
        "AutoModelForImageClassification": "modeling.Evil"}}))
    (d / "hfcode" / "modeling.py").write_text(f"open({str(d / 'PWNED')!r}, 'w').write('ran')\n")
    python = {"kind": "python", "spec": f"{d / 'helper.py'}:make", "name": "helper.py:make"}
    sources = {"pyref": python, "pyref-as-timm": {**python, "kind": "timm"},
               "hfref": {"kind": "hf", "spec": str(d / "hfcode")},
               "pickleref": {"kind": "timm", "spec": "timm:vit_tiny_patch16_224", "checkpoint": str(d / "full.pth")},
               "kwargsref": {"kind": "timm", "spec": "timm:vit_tiny_patch16_224",
                             "build": {"model_kwargs": {"checkpoint_path": str(d / "full.pth")}}}}
    for name, source in sources.items():
        shutil.copytree(demo_onnx, d / name)
        manifest = json.loads((d / name / "manifest.json").read_text())
        (d / name / "manifest.json").write_text(json.dumps({**manifest, "source": source}))
    shutil.copytree(demo_onnx, d / "swapped")  # the same graph with one weight changed: it would run
    model = onnx.load(str(d / "swapped" / "model.onnx"))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    changed = numpy_helper.to_array(weight).copy()
    changed.flat[0] += 1.0
    weight.CopyFrom(numpy_helper.from_array(changed, weight.name))
    onnx.save(model, str(d / "swapped" / "model.onnx"))
    for name, edit in (("unhashed", {"files": {}}), ("newer", {"format": 99})):
        shutil.copytree(demo_onnx, d / name)
        manifest = json.loads((d / name / "manifest.json").read_text())
        (d / name / "manifest.json").write_text(json.dumps({**manifest, **edit}))


class _RunsCode:
    """Pickles to a call that creates ``marker``: the side effect that proves code ran on load."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")  # unpickling calls open(marker, "w"): the file appears


def _fill(arg: str, d: Path, demo: Path) -> str:
    return arg.replace("{d}", str(d)).replace("{demo}", str(demo)).replace("{enc}", ENCODER)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(case, bad_files, demo_onnx, tmp_path):
    from vit_edge.cli import cli

    if case.command not in cli.commands:
        pytest.skip(f"the {case.command} command is not merged yet")
    out = tmp_path / "out"
    args = [_fill(a, bad_files, demo_onnx) for a in case.args]
    if args[0] == "convert" and "--out" not in args:
        args += ["--out", str(out)]
    before = sorted(p.name for p in bad_files.iterdir())
    result = run_cli(*args)
    assert_one_line_error(result, case.code, *case.message)
    # Nothing written: no --out, no temporary sibling, no new file among the inputs.
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in bad_files.iterdir()) == before
    assert not (bad_files / "PWNED").exists()


def test_checkpoint_with_mismatched_keys_names_them(tmp_path):
    import torch

    state = {"patch_embed.weight": torch.zeros(64, 3, 4, 4), "blocks.0.unknown": torch.zeros(3)}
    checkpoint = tmp_path / "wrong.pth"
    torch.save(state, checkpoint)
    result = run_cli("convert", ENCODER, "--checkpoint", checkpoint, "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "missing keys", "unexpected keys", "blocks.0.unknown", "patch_embed.bias")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.pth"]


def test_existing_out_without_force_is_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli("convert", "--out", out), 2, "already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failed_validate_writes_no_report(demo_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    report = tmp_path / "r.json"
    assert_one_line_error(run_cli("validate", demo_onnx, "--data", tmp_path / "empty", "--json", report), 2,
                          "holds no files")
    assert not report.exists()


def _mode_images():
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    gray16 = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257))
    return {"L": rgb.convert("L"), "RGBA": rgb.convert("RGBA"), "CMYK": rgb.convert("CMYK"), "I;16": gray16,
            "P": rgb.convert("P"), "LA": rgb.convert("LA"), "1": rgb.convert("1"), "RGB": rgb}


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_image_mode_is_converted(tmp_path, mode):
    """Shapes for every mode are covered by test_properties; this checks 16-bit gray lands on the 8-bit scale."""
    from vit_edge.preprocess import PreprocessConfig, image_to_array, open_image

    cfg = PreprocessConfig(input_size=(32, 32))
    image = _mode_images()[mode]
    path = tmp_path / f"img.{'tiff' if mode in ('I;16', 'CMYK') else 'png'}"
    image.save(path)
    arr = image_to_array(open_image(path), cfg)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32 and np.isfinite(arr).all()
    if mode == "I;16":
        ref = image_to_array(_mode_images()["L"], cfg)
        assert float(np.abs(arr - ref).max()) < 0.05


# ---------------------------------------------------------------- the Python API


@dataclass(frozen=True)
class ApiCase:
    id: str
    input: str
    call: object  # (runtime, bad_files) -> anything; must raise
    error: str  # the VitEdgeError subclass
    message: str
    expected: str | None = None  # a fragment of err.expected, when the error has two sides
    got: str | None = None


def _predict(x):
    return lambda rt, d: rt.predict(x(d) if callable(x) else x)


def _load(path):
    def call(rt, d):
        from vit_edge import runtimes

        return runtimes.load(path.format(d=d))
    return call


def _load_model(spec, **kw):
    def call(rt, d):
        from vit_edge.sources import load_model

        return load_model(spec.format(d=d), **kw)
    return call


def _preprocess(**kw):
    def call(rt, d):
        from vit_edge.preprocess import PreprocessConfig

        return PreprocessConfig(**kw)
    return call


API_CASES = [
    ApiCase("wrong-size", "NCHW batch of the wrong size", _predict(np.zeros((1, 3, 16, 16), np.float32)),
            "InputError", "does not match the model input", "(N, 3, 32, 32)", "(1, 3, 16, 16)"),
    ApiCase("wrong-channels", "1-channel NCHW batch", _predict(np.zeros((2, 1, 32, 32), np.float32)),
            "InputError", "does not match the model input", "(N, 3, 32, 32)", "(2, 1, 32, 32)"),
    ApiCase("int-batch", "integer NCHW batch", _predict(np.zeros((1, 3, 32, 32), np.int64)),
            "InputError", "must be floating point", "float32", "int64"),
    ApiCase("bool-batch", "boolean NCHW batch", _predict(np.zeros((1, 3, 32, 32), bool)),
            "InputError", "must be floating point", "float32", "bool"),
    ApiCase("nan", "NaN in the batch", _predict(np.full((1, 3, 32, 32), np.nan, np.float32)),
            "InputError", "NaN or Inf", "finite", "non-finite"),
    ApiCase("inf", "Inf in the batch", _predict(np.full((1, 3, 32, 32), np.inf, np.float32)),
            "InputError", "NaN or Inf", "finite", "non-finite"),
    ApiCase("float64-overflow", "float64 values beyond float32's range", _predict(np.full((1, 3, 32, 32), 1e300)),
            "InputError", "NaN or Inf", "finite", "non-finite"),
    ApiCase("empty-batch", "empty NCHW batch", _predict(np.zeros((0, 3, 32, 32), np.float32)),
            "InputError", "empty batch", "N >= 1", "(0, 3, 32, 32)"),
    ApiCase("empty-list", "empty list of images", _predict([]), "InputError", "empty input", "at least one", "0"),
    ApiCase("none", "None", _predict(None), "InputError", "cannot read images", "path, PIL image", "NoneType"),
    ApiCase("chw-float", "one CHW float image (no batch axis)", _predict(np.zeros((3, 32, 32), np.float32)),
            "InputError", "HxWxC", None, "(3, 32, 32)"),
    ApiCase("5d", "5-D array", _predict(np.zeros((1, 1, 3, 32, 32), np.float32)), "InputError", "HxWxC",
            None, "(1, 1, 3, 32, 32)"),
    ApiCase("hwc-int32", "HWC int32 image", _predict(np.zeros((8, 8, 3), np.int32)), "InputError",
            "uint8 or uint16", None, "int32"),
    ApiCase("zero-size-image", "HW array with a zero side", _predict(np.zeros((0, 5), np.uint8)), "InputError",
            "HxWxC", None, "(0, 5, 1)"),
    ApiCase("mixed-list", "list holding a number", _predict([np.zeros((8, 8, 3), np.uint8), 3]), "InputError",
            "unsupported input item", "path, PIL image", "int"),
    ApiCase("missing-image", "image path missing", _predict(lambda d: str(d / "nothere.png")), "DataError",
            "no such image file"),
    ApiCase("bomb", "decompression bomb", _predict(lambda d: d / "bomb.png"), "DataError", "image too large",
            "150,000,000", "169,000,000"),
    ApiCase("load-missing", "runtimes.load of a missing .onnx", _load("{d}/missing.onnx"), "ArtifactError",
            "no such artifact"),
    ApiCase("load-garbage", "runtimes.load of a broken .onnx", _load("{d}/garbage.onnx"), "ArtifactError", "ONNX"),
    ApiCase("load-external", "runtimes.load of an .onnx with ../ external data", _load("{d}/ext/dotdot.onnx"),
            "ArtifactError", "points outside"),
    ApiCase("manifest-escape", "runtimes.load of a folder whose manifest names ../truncated.onnx",
            _load("{d}/escape"), "ArtifactError", "outside its folder"),
    ApiCase("model-typo", "load_model with a misspelled timm name", _load_model("timm:vit_tiny_patch16_22"),
            "ModelSpecError", "did you mean timm:vit_tiny_patch16_224"),
    ApiCase("task-typo", "load_model with an unknown task", _load_model("demo", task="feature"),
            "ModelSpecError", "unknown task"),
    ApiCase("preprocess-std", "PreprocessConfig with std 0", _preprocess(std=(0.0, 1.0, 1.0)), "InputError",
            "std values must be positive", None, "(0.0, 1.0, 1.0)"),
    ApiCase("preprocess-interp", "PreprocessConfig with interpolation 'lanczos'", _preprocess(interpolation="lanczos"),
            "InputError", "unknown interpolation", "bilinear|bicubic|nearest"),
]


@pytest.fixture(scope="module")
def demo_runtime(demo_onnx):
    from vit_edge import runtimes

    return runtimes.load(demo_onnx)


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_bad_input(case, demo_runtime, bad_files):
    from vit_edge import errors

    with pytest.raises(errors.VitEdgeError) as info:
        case.call(demo_runtime, bad_files)
    err = info.value
    assert type(err).__name__ == case.error, err.one_line()
    assert case.message.lower() in err.one_line().lower()
    assert "\n" not in err.one_line()
    if case.expected is not None:
        assert case.expected in str(err.expected), err.one_line()
    if case.got is not None:
        assert case.got in str(err.got), err.one_line()


def test_runtime_still_works_after_bad_input(demo_runtime):
    """Errors are raised before the backend runs, so one bad call does not spoil the runtime."""
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    first = demo_runtime.predict(batch)
    with pytest.raises(Exception):
        demo_runtime.predict(np.full((2, 3, 32, 32), np.nan, np.float32))
    np.testing.assert_array_equal(demo_runtime.predict(batch), first)


# ---------------------------------------------------------------- docs/ERRORS.md


def _code(text) -> str:
    return "-" if text is None else "`" + str(text).replace("|", "\\|") + "`"


def errors_markdown() -> str:
    lines = ["# Errors: what vit-edge says for bad input", "",
             "Generated from `tests/test_bad_input.py` (`python tests/test_bad_input.py`); every row is a test.",
             "", "The CLI prints one line `error: <problem>; <fix>` and exits 2 (1 only when a parity check fails,",
             "130 when interrupted). Nothing is left at `--out`: outputs are written into a temporary sibling and",
             "renamed into place only when complete. The Python API raises a `vit_edge.errors.VitEdgeError`",
             "subclass whose `expected` and `got` attributes carry both sides of a mismatch.", "",
             "## Command line", "", "| command | input | exit | the error line contains |", "|---|---|---|---|"]
    for c in CLI_CASES:
        lines.append(f"| `{c.command}` | {c.input} | {c.code} | {' … '.join(_code(m) for m in c.message)} |")
    lines += ["", "## Python API", "", "| input | raises | message contains | expected | got |", "|---|---|---|---|---|"]
    for c in API_CASES:
        lines.append(f"| {c.input} | `{c.error}` | {_code(c.message)} | {_code(c.expected)} | {_code(c.got)} |")
    return "\n".join(lines) + "\n"


def test_errors_doc_is_current():
    assert DOC.read_text() == errors_markdown(), "regenerate with: python tests/test_bad_input.py"


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(errors_markdown())
    print(f"wrote {DOC} ({len(CLI_CASES)} CLI cases, {len(API_CASES)} API cases)")
