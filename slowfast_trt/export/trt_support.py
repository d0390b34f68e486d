"""What TensorRT 10.x and 11.x document they take from an ONNX model: opsets, element types, operators and their limits.

Facts only; `trt_check` applies them. Each release row is the intersection over the minors read, so a model that
passes for "10" parses on every 10.x read, not only the newest. Sources (read 2026-12; rules restated, not copied):

- Operator matrix: onnx/onnx-tensorrt `docs/operators.md` at 96e7811 (release 10.1-GA, "TensorRT 10.0 ... opset 9 to
  opset 20"), at the 10.15 release ("opset 9 to opset 24"), and at 7c51a63 (the parser of NVIDIA/TensorRT v11.1,
  "TensorRT 11.1 ... opset 9 to opset 24").
- Parser behaviour behind the matrix: onnx-tensorrt `onnxOpImporters.cpp` (10.1-GA and the 10.x head): Q/DQ
  (`QuantDequantLinearHelper`), Resize, RoiAlign (imported as the `ROIAlign_TRT` v2 plugin), `convertDtype`.
- Q/DQ layer rules: NVIDIA/TensorRT v11.1 `include/NvInfer.h` (IQuantizeLayer, IDequantizeLayer) and the developer
  guide's "Explicit Quantization" and "Working with Quantized Types" pages (docs.nvidia.com/deeplearning/tensorrt).
- Bundled ONNX: 10.0 GA moved the parser to ONNX 1.16 (IR 10); TensorRT 11.x ships ONNX 1.20 (IR 13), per the
  11.x "ONNX Opset Guide".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# ONNX element type names (onnx.TensorProto.DataType) grouped the way the operator matrix lists them.
FLOATS = frozenset({"FLOAT", "FLOAT16", "BFLOAT16"})
NUMERIC = FLOATS | {"INT32", "INT64"}
ANY = NUMERIC | {"BOOL"}
INDEX = frozenset({"INT32", "INT64"})
SHAPE = frozenset({"INT64"})
QUANTIZED_10 = frozenset({"INT8", "FLOAT8E4M3FN", "INT4"})
QUANTIZED_11 = QUANTIZED_10 | {"FLOAT4E2M1"}

TRT_MAJORS = (10, 11)


@dataclass(frozen=True)
class Attr:
    """A limit on one attribute: `allowed` values (or a predicate), the ONNX default, and whether it must be written.

    `required` marks an attribute whose ONNX default TensorRT's importer does not share, so leaving it out changes the
    result; `why` is the rule in a sentence.
    """

    name: str
    allowed: frozenset | None = None  # None: any value passes `check`
    default: object = None
    check: str | None = None  # a named predicate in trt_check.PREDICATES
    required: bool = False
    why: str = ""


@dataclass(frozen=True)
class OpRule:
    """One operator's limits: element types of its data inputs, index inputs, build-time constants, attributes, ranks."""

    types: frozenset[str]
    typed: tuple[int, ...] | None = None  # input positions carrying `types` (None: every input not in `index`)
    index: dict[int, frozenset[str]] = field(default_factory=dict)  # shape / index / mask inputs and their types
    constants: dict[int, str] = field(default_factory=dict)  # input position -> name, must be known at build time
    attrs: tuple[Attr, ...] = ()
    ranks: tuple[int, ...] | None = None  # allowed ranks of input 0
    outputs: int | None = None  # how many outputs TensorRT produces
    forbidden: tuple[str, ...] = ()  # attributes the importer refuses when present


ONES = "all_ones"
DILATIONS = Attr("dilations", check=ONES, why="TensorRT pools without dilation: `dilations` must be empty or all ones")
POOL = {"types": FLOATS, "ranks": (4, 5), "attrs": (DILATIONS,)}
REDUCE = OpRule(NUMERIC, index={1: SHAPE}, constants={1: "axes"})
RESIZE_MODES = Attr("mode", frozenset({"nearest", "linear"}), "nearest", why="TensorRT's documented Resize modes are nearest and linear")
RESIZE_TRANSFORMS = Attr(
    "coordinate_transformation_mode",
    frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}),
    "half_pixel",
    why="tf_crop_and_resize and half_pixel_symmetric are not among TensorRT's Resize transformations",
)
RESIZE_NEAREST = Attr("nearest_mode", frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}), "round_prefer_floor")

# Limits of the operators this project's exporters write (every SlowFast/Slow/Fast variant, the detection head's
# RoIAlign in plain ops, non-local blocks, the fast-input variants, Q/DQ) and of the ones a converted or hand-edited
# model most often brings (RoiAlign itself, ConvTranspose, pooling, Pad, Dropout). Operators without a row here are
# checked for support and element types only.
OPS_10: dict[str, OpRule] = {
    **{op: OpRule(NUMERIC) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Neg", "Abs", "Relu")},
    **{op: OpRule(NUMERIC) for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")},
    **{op: OpRule(frozenset({"BOOL"})) for op in ("And", "Or", "Xor", "Not")},
    **{
        op: OpRule(FLOATS)
        for op in (
            "BatchNormalization",
            "Ceil",
            "Clip",
            "Einsum",
            "Erf",
            "Exp",
            "Floor",
            "Gemm",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "InstanceNormalization",
            "LeakyRelu",
            "Log",
            "LogSoftmax",
            "MatMul",
            "Pow",
            "Reciprocal",
            "Round",
            "Sigmoid",
            "Softmax",
            "Sqrt",
            "Tanh",
            "Upsample",
        )  # fmt: skip
    },
    **{op: OpRule(ANY) for op in ("Concat", "Flatten", "Identity", "Shape", "Transpose")},
    **{op: REDUCE for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax")},
    **{op: REDUCE for op in ("ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
    "Conv": OpRule(FLOATS, ranks=(3, 4, 5)),
    "ConvTranspose": OpRule(FLOATS, ranks=(3, 4, 5)),
    "MaxPool": OpRule(**POOL, outputs=1),
    "AveragePool": OpRule(**POOL),
    "LpPool": OpRule(FLOATS, attrs=(DILATIONS,)),
    "Cast": OpRule(NUMERIC | {"UINT8", "BOOL"}),  # and its `to` type
    "Constant": OpRule(ANY, forbidden=("sparse_value", "value_string", "value_strings")),
    "ConstantOfShape": OpRule(ANY, typed=(), index={0: SHAPE}),
    "Expand": OpRule(ANY, index={1: SHAPE}),
    "Gather": OpRule(ANY, index={1: INDEX}),
    "GatherElements": OpRule(ANY, index={1: INDEX}),
    "GatherND": OpRule(ANY, index={1: INDEX}),
    "Range": OpRule(NUMERIC),
    "Reshape": OpRule(ANY, index={1: SHAPE}),
    "Tile": OpRule(ANY, index={1: SHAPE}),
    "Split": OpRule(ANY, index={1: SHAPE}),
    "Slice": OpRule(ANY, index={1: INDEX, 2: INDEX, 3: INDEX, 4: INDEX}, constants={3: "axes"}),
    "Squeeze": OpRule(ANY, index={1: SHAPE}, constants={1: "axes"}),
    "Unsqueeze": OpRule(ANY, index={1: SHAPE}, constants={1: "axes"}),
    "Where": OpRule(ANY, index={0: frozenset({"BOOL"})}),
    "Pad": OpRule(NUMERIC, index={1: SHAPE, 3: INDEX}, constants={3: "axes"}),
    "CumSum": OpRule(FLOATS, index={1: INDEX}, constants={1: "axis"}),
    "Dropout": OpRule(FLOATS, typed=(0,), index={1: FLOATS, 2: frozenset({"BOOL"})}, constants={2: "training_mode"}),
    "TopK": OpRule(NUMERIC, index={1: SHAPE}, attrs=(Attr("sorted", frozenset({1}), 1, why="TensorRT's TopK only sorts"),)),
    "ScatterND": OpRule(NUMERIC, index={1: INDEX}, forbidden=("reduction",)),
    "LayerNormalization": OpRule(FLOATS, outputs=1),
    "Resize": OpRule(
        FLOATS,
        typed=(0,),
        index={1: FLOATS, 2: FLOATS, 3: SHAPE},
        attrs=(
            RESIZE_MODES,
            RESIZE_TRANSFORMS,
            RESIZE_NEAREST,
            Attr("keep_aspect_ratio_policy", frozenset({"stretch"}), "stretch"),
            Attr("antialias", frozenset({0}), 0, why="TensorRT's Resize does not antialias"),
        ),
    ),
    # ONNX RoiAlign is imported as the ROIAlign_TRT v2 plugin: X must be N,C,H,W, rois K,4; the importer defaults
    # `sampling_ratio` to 1 where ONNX defaults to 0 (adaptive), so the attribute must be written to mean the same.
    "RoiAlign": OpRule(
        frozenset({"FLOAT", "FLOAT16"}),
        typed=(0, 1),
        index={2: INDEX},
        ranks=(4,),
        attrs=(
            Attr("mode", frozenset({"avg", "max"}), "avg"),
            Attr("coordinate_transformation_mode", frozenset({"half_pixel", "output_half_pixel"}), "half_pixel"),
            Attr("output_height", check="positive", default=1),
            Attr("output_width", check="positive", default=1),
            Attr("spatial_scale", check="positive", default=1.0),
            Attr(
                "sampling_ratio",
                check="non_negative",
                required=True,
                why="TensorRT's importer takes a missing sampling_ratio as 1, ONNX as 0 (adaptive): write it",
            ),
        ),
    ),
    "QuantizeLinear": OpRule(FLOATS, typed=(0,), index={1: FLOATS}),
    "DequantizeLinear": OpRule(FLOATS, typed=(), index={1: FLOATS}),  # its input types: Release.quantized
}
OPS_11: dict[str, OpRule] = {
    **OPS_10,
    # 10.0's "`axes` must be an initializer" on Slice and Pad is gone from the 11.1 matrix.
    "Slice": replace(OPS_10["Slice"], constants={}),
    "Pad": replace(OPS_10["Pad"], constants={}),
    "Pow": OpRule(NUMERIC),
    "Constant": replace(OPS_10["Constant"], types=ANY | QUANTIZED_11),
}

# Operators the 10.0/10.1 matrix marks supported ("Y"); every later 10.x and 11.x keeps them.
SUPPORTED_10 = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
    Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear
    Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid
    HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
    Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
    Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)
# Added by 11.1's matrix (the window functions and STFT arrived in 10.4/10.5, the rest in 10.14-11.0).
SUPPORTED_11 = SUPPORTED_10 | {
    "Attention", "BlackmanWindow", "HammingWindow", "HannWindow", "RMSNormalization", "RotaryEmbedding", "STFT",
    "Swish", "TensorScatter",
}  # fmt: skip


@dataclass(frozen=True)
class Release:
    """One TensorRT major as its ONNX parser documents it."""

    major: int
    opsets: tuple[int, int]  # default-domain opset range, inclusive
    max_ir: int  # IR version of the ONNX release the parser is built with
    onnx: str
    dtypes: frozenset[str]  # element types the parser maps to a TensorRT type
    quantized: frozenset[str]  # the types that exist only between Q and DQ
    supported: frozenset[str]
    ops: dict[str, OpRule]
    source: str


RELEASES = {
    10: Release(
        major=10,
        opsets=(9, 20),
        max_ir=10,
        onnx="1.16",
        dtypes=ANY | {"DOUBLE", "UINT8"} | QUANTIZED_10,
        quantized=QUANTIZED_10,
        supported=SUPPORTED_10,
        ops=OPS_10,
        source="onnx-tensorrt docs/operators.md 10.1-GA (96e7811) and 10.15; importer 10.1-GA",
    ),
    11: Release(
        major=11,
        opsets=(9, 24),
        max_ir=13,
        onnx="1.20",
        dtypes=ANY | {"DOUBLE", "UINT8"} | QUANTIZED_11,
        quantized=QUANTIZED_11,
        supported=SUPPORTED_11,
        ops=OPS_11,
        source="onnx-tensorrt docs/operators.md at 7c51a63 (TensorRT v11.1); NvInfer.h v11.1",
    ),
}

# Where per-channel weight scales must run: the output-channel axis of the weight input of each weighted operator
# (Conv K,C,kernel...: 0; ConvTranspose C,K,kernel...: 1; MatMul K,N: the last; Gemm by transB). Per-channel
# scales are for weights only; activations take one scale (NvInfer.h, IQuantizeLayer/IDequantizeLayer).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
