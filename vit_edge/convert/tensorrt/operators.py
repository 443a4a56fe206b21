"""Which ONNX operators and opsets TensorRT's ONNX parser accepts, by TensorRT version: data, not code.

``SUPPORTED`` is transcribed from onnx-tensorrt ``docs/operators.md`` for TensorRT 10.15 ("TensorRT 10.15
supports operators in the inclusive range of opset 9 to opset 24"), the rows marked ``Y``. Older parsers
lack the operators in ``ADDED_IN``, read from onnx-tensorrt ``docs/Changelog.md``:

- 10.4 GA: "Added support for `BlackmanWindow`, `HammingWindow`, and `HannWindow` operations"
- 10.5 GA: "Added support for real-valued `STFT` operations"
- 10.9 GA: "Added support for opset 21 GroupNorm"
- 10.14 GA: "Added support for the `Attention` operator"
- 10.15 GA: "Added support for `RotaryEmbedding`, `RMSNormalization` and `TensorScatter`"

Opset ceilings (``OPSET_MAX``): operators.md for 10.0 says "TensorRT 10.0 supports operators in the
inclusive range of opset 9 to opset 20"; the changelog raises the bundled ONNX only from 10.6 on ("Updated
ONNX submodule version to 1.17.0"), so 10.0-10.14 are held to opset 20 here (the ceiling documented for
them; a later minor may accept more, but we only claim what a page says). 10.15: opset 24 (its
operators.md); 11.5: "Added support for ONNX opset 25". Re-transcribe when bumping the supported range.
"""

SOURCE = "onnx/onnx-tensorrt docs/operators.md and docs/Changelog.md"

# (first TensorRT version, highest opset its parser documents), ascending.
OPSET_MAX = (((10, 0), 20), ((10, 15), 24), ((11, 5), 25))
OPSET_MIN = 9

# Operators of the 10.15 list that older parsers do not have: op -> first (major, minor) that parses it.
ADDED_IN = {
    "BlackmanWindow": (10, 4), "HammingWindow": (10, 4), "HannWindow": (10, 4),
    "STFT": (10, 5),
    "Attention": (10, 14),
    "RMSNormalization": (10, 15), "RotaryEmbedding": (10, 15), "TensorScatter": (10, 15),
}
# Operators whose newer opset version came later than the operator itself: (op, since opset) -> version.
OPSET_VERSION_ADDED_IN = {("GroupNormalization", 21): (10, 9)}

SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax
Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan
Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK Transpose
Trilu Unsqueeze Upsample Where Xor
""".split())


def opset_max(version: tuple) -> int:
    """The highest opset the parser of TensorRT ``version`` (major, minor) documents."""
    best = OPSET_MAX[0][1]
    for since, opset in OPSET_MAX:
        if version >= since:
            best = opset
    return best


def supported_by(version: tuple) -> frozenset:
    """The operators the parser of TensorRT ``version`` accepts."""
    return frozenset(op for op in SUPPORTED if ADDED_IN.get(op, (0, 0)) <= version)
