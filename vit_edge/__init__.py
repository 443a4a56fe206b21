"""vit-edge: ship trained Vision Transformers to edge hardware.

Importing this package is cheap: torch, onnxruntime, openvino and tensorrt are imported only by the
functions that need them.
"""

__version__ = "0.1.0"

from vit_edge.errors import VitEdgeError  # noqa: E402  (light, no heavy imports)

__all__ = ["__version__", "VitEdgeError"]
