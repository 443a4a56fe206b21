#!/usr/bin/env python
"""optimum-intel's static INT8 of a Hugging Face image classifier, done the way its documentation shows.

    OPTIMUM_VENV/bin/python benchmarks/optimum_int8.py MODEL_DIR CALIB_FILES.json NUM_SAMPLES OUT_DIR

Runs in optimum-intel's own virtual environment (``benchmarks/vs_optimum.py`` makes it and calls this): the model is
exported with ``OVModelForImageClassification.from_pretrained(dir, export=True)``, the calibration images (the JSON
list of files, the same ones vit-edge calibrates on) go through the model's own image processor into a
``datasets.Dataset``, and ``OVQuantizer.quantize`` with ``OVConfig(quantization_config=OVQuantizationConfig(
num_samples=N))`` writes the INT8 IR (``OUT_DIR/openvino_model.xml``), all optimum's defaults otherwise. It writes
``OUT_DIR/optimum_int8.json``: the package versions and the seconds each step took.
"""

import json
import sys
import time
from pathlib import Path


def main(argv: list) -> int:
    model_dir, files_json, num_samples, out = argv[0], Path(argv[1]), int(argv[2]), Path(argv[3])
    started = time.perf_counter()
    import datasets
    import nncf
    import openvino
    import transformers
    from optimum.intel import OVConfig, OVModelForImageClassification, OVQuantizationConfig, OVQuantizer
    from PIL import Image

    steps = {"import": time.perf_counter() - started}
    mark = time.perf_counter()
    model = OVModelForImageClassification.from_pretrained(model_dir, export=True)
    processor = transformers.AutoImageProcessor.from_pretrained(model_dir)
    steps["load_and_export"], mark = time.perf_counter() - mark, time.perf_counter()

    files = json.loads(files_json.read_text())
    images = [Image.open(name).convert("RGB") for name in files]
    pixels = processor(images, return_tensors="np")["pixel_values"]
    calibration = datasets.Dataset.from_dict({"pixel_values": list(pixels)}).with_format("torch")
    steps["calibration_data"], mark = time.perf_counter() - mark, time.perf_counter()

    quantizer = OVQuantizer.from_pretrained(model)
    config = OVQuantizationConfig(num_samples=num_samples)
    quantizer.quantize(calibration_dataset=calibration, ov_config=OVConfig(quantization_config=config),
                       save_directory=out)
    processor.save_pretrained(out)
    steps["quantize_and_save"] = time.perf_counter() - mark
    info = {"versions": {"optimum-intel": _version("optimum-intel"), "optimum": _version("optimum"),
                         "transformers": transformers.__version__, "datasets": datasets.__version__,
                         "nncf": nncf.__version__, "openvino": openvino.__version__},
            "calibration_images": len(files), "quantization_config": config.to_dict(),
            "steps_seconds": {k: round(v, 2) for k, v in steps.items()},
            "seconds_in_process": round(time.perf_counter() - started, 2), "ir": str(out / "openvino_model.xml")}
    (out / "optimum_int8.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    print(json.dumps(info, default=str))
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
