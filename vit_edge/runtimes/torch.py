"""The torch FP32 reference: a MODEL spec (or loaded model) run eagerly, fed exactly like the artifacts."""

from __future__ import annotations

import numpy as np

from vit_edge.runtimes.base import Runtime


class TorchRuntime(Runtime):
    target = "torch"

    def __init__(self, loaded, *, threads: int | None = None, preprocess=None):
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.loaded = loaded
        self.module = loaded.module.eval()
        super().__init__(preprocess=preprocess or loaded.preprocess, labels=loaded.labels, task=loaded.task,
                         manifest={"source": loaded.source}, name=loaded.name, precision="fp32",
                         dynamic_size=True)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).float().numpy()
