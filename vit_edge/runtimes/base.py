"""The one Runtime interface every backend implements (Polygraphy's runner idea, kept small).

Public methods check and prepare inputs, then call the backend's ``_infer`` on an NCHW float32 batch.
"""

from __future__ import annotations

import numpy as np

from vit_edge.errors import DataError
from vit_edge.preprocess import PreprocessConfig, as_batch, check_batch, image_to_array, open_image


class Runtime:
    """Runs one model. Subclasses set ``target``/``precision`` and implement ``_infer(batch) -> array``."""

    target = "?"

    def __init__(self, *, preprocess: PreprocessConfig, labels=None, task: str = "classify",
                 manifest=None, name: str = "", precision: str = "fp32",
                 max_batch: int | None = None, dynamic_size: bool = False):
        self.preprocess = preprocess
        self.labels = labels
        self.task = task
        self.manifest = manifest  # artifact.Manifest, or None (a torch reference, a bare file)
        self.name = name
        self.precision = precision
        self.max_batch = max_batch
        self.dynamic_size = dynamic_size

    # ------------------------------------------------------------------ public API
    def predict(self, inputs) -> np.ndarray:
        """Logits (or features) for image paths, PIL images, HWC uint8 arrays, or an NCHW float batch."""
        batch = as_batch(inputs, self.preprocess) if not (isinstance(inputs, np.ndarray) and inputs.ndim == 4) \
            else check_batch(inputs, self.preprocess, self.dynamic_size)
        return self.run(batch)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run an already preprocessed NCHW float32 batch (checked), splitting it to ``max_batch``."""
        batch = check_batch(batch, self.preprocess, self.dynamic_size)
        step = self.max_batch or len(batch)
        outs = [self._infer(batch[i:i + step]) for i in range(0, len(batch), step)]
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def run_many(self, batches):
        """Yield the outputs of each preprocessed batch of ``batches`` (any iterable), in order. Backends that
        can keep several batches in flight (OpenVINO's throughput streams) override it: for a stream of
        batches it is the fast path, where ``run`` must finish one batch before the next starts."""
        for batch in batches:
            yield self.run(batch)

    def topk(self, inputs, k: int = 5) -> list:
        """Per image, the k best ``(label, probability)`` pairs (label = index when the model has none)."""
        logits = self.predict(inputs)
        probs = softmax(logits)
        k = min(k, probs.shape[1])
        result = []
        for row in probs:
            best = np.argsort(-row, kind="stable")[:k]
            result.append([(self.label(i), float(row[i])) for i in best])
        return result

    def topk_stream(self, paths, k: int = 5, batch_size: int = 32, skip=()):
        """Yield ``(path, best)`` for each image path in order, ``batch_size`` of them decoded and run at a
        time: memory is one batch's however many paths there are, and results come as each batch finishes.
        A path in ``skip`` that does not decode yields ``best=None``; any other raises its DataError."""
        paths = list(paths)
        for start in range(0, len(paths), batch_size):
            arrays, rows = [], []
            for path in paths[start:start + batch_size]:
                try:
                    arrays.append(image_to_array(open_image(path), self.preprocess))
                    rows.append(len(arrays) - 1)
                except DataError:
                    if path not in skip:
                        raise
                    rows.append(None)
            best = self.topk(np.stack(arrays), k=k) if arrays else []
            yield from ((path, None if row is None else best[row])
                        for path, row in zip(paths[start:start + batch_size], rows))

    def label(self, index: int):
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else int(index)

    def info(self) -> dict:
        return {"name": self.name, "target": self.target, "precision": self.precision, "task": self.task,
                "input_size": list(self.preprocess.input_size)}

    def close(self) -> None:
        """Release what the backend holds (sessions, compiled models, device memory). Safe to call twice;
        the runtime cannot run afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.target}/{self.precision}>"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
