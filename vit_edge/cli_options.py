"""Options declared once and reused by every command that takes them (click decorators and parsers)."""

from __future__ import annotations

import click


def _floats(text, what):
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, one per input channel (or one for all), "
                                 f"e.g. 0.485,0.456,0.406 or 0.5 (got {text!r})") from None
    return values


def parse_input_size(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"use N or H,W with positive integers (got {value!r})") from None
    if len(parts) not in (1, 2) or any(p < 8 or p > 8192 for p in parts):
        raise click.BadParameter(f"use N or H,W with integers between 8 and 8192 (got {value!r})")
    return (parts[0], parts[0]) if len(parts) == 1 else tuple(parts)


def parse_channel_values(ctx, param, value):
    """--mean/--std: one number per input channel, or one for every channel; the count is checked against
    the model's channels once the model is loaded (sources.channels)."""
    if value is None:
        return None
    values = _floats(value, f"--{param.name}")
    if param.name == "std" and any(v <= 0 for v in values):
        raise click.BadParameter(f"std values must be positive (got {value!r})")
    return values


def apply(*options):
    """One decorator applying ``options`` in the order listed (as --help shows them)."""
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


PREPROCESS = (
    click.option("--input-size", callback=parse_input_size, help="Model input size: N or H,W."),
    click.option("--mean", callback=parse_channel_values,
                 help="Normalisation mean, one value per input channel (R,G,B) or one for all (0..1 scale)."),
    click.option("--std", callback=parse_channel_values,
                 help="Normalisation std, one value per input channel (R,G,B) or one for all (0..1 scale)."),
    click.option("--channels", type=click.IntRange(1, 64), default=None,
                 help="Input channels (default: the model's; 1 = grayscale, images are converted to L)."),
    click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]),
                 help="Resize filter (default: the model's)."),
    click.option("--crop-pct", type=click.FloatRange(0.05, 1.0),
                 help="Centre-crop fraction (1.0 = resize the shorter side to the input size)."),
)
PREPROCESS_NAMES = ("input_size", "mean", "std", "channels", "interpolation", "crop_pct")

# For artifacts another tool wrote (no vit-edge manifest): their preprocessing, read from the model they came from.
PREPROCESS_FROM = click.option(
    "--preprocess-from", metavar="MODEL",
    help="Feed an artifact that records no preprocessing (an IR or ONNX another tool wrote) as MODEL (timm:NAME, "
         "an HF directory, ...) declares; the preprocessing flags override it.")

THRESHOLDS = (
    click.option("--max-top1-drop", type=click.FloatRange(0, 100), default=None,
                 help="Largest allowed top-1 drop in points (default 0.5)."),
    click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
                 help="Smallest allowed top-1 agreement, 0..1 (default 0.98)."),
    click.option("--min-cosine", type=click.FloatRange(-1, 1), default=None,
                 help="Smallest mean cosine similarity for feature models (default 0.99)."),
)
THRESHOLD_NAMES = ("max_top1_drop", "min_agreement", "min_cosine")

def source_options(what: str = "the model", task: bool = True) -> tuple:
    """How a MODEL spec is built (--checkpoint, --trust-checkpoint, --task, --labels): ``convert``'s, and the
    same for every command that takes a MODEL spec (``what`` names it in the help)."""
    return (
        click.option("--checkpoint", type=click.Path(), help=f"Weights (.pth/.pt/.safetensors) for {what} "
                     "(without one, timm/torchvision/HF models are randomly initialised)."),
        click.option("--trust-checkpoint", is_flag=True,
                     help="Allow pickles beyond plain tensors (runs their code!)."),
        *((click.option("--task", type=click.Choice(["classify", "features"]), default=None,
                        help="What it outputs: classify (logits, the default) or features (embeddings)."),)
          if task else ()),
        click.option("--labels", "labels_file", type=click.Path(), help="Label names: text (one per line) or JSON."),
        click.option("--num-classes", type=click.IntRange(1), default=None,
                     help="Rebuild the classifier head with N classes before loading --checkpoint (timm, "
                          "torchvision, Hugging Face: a model fine-tuned on another class count)."),
    )


SOURCE = source_options()
SOURCE_NAMES = ("checkpoint", "trust_checkpoint", "task", "labels_file", "num_classes")

INT8 = (
    click.option("--calib", help="Calibration data for INT8: image folder, .npy/.npz, or digits:train."),
    click.option("--calib-size", type=click.IntRange(1), default=300, show_default=True,
                 help="Calibration images sampled (seeded)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and random init."),
    click.option("--preset", type=click.Choice(["performance", "mixed"]), default=None,
                 help="INT8 activation scheme (performance = symmetric)."),
    click.option("--smooth-quant-alpha", type=float, default=None,
                 help="SmoothQuant alpha (negative disables; default: tried with and without, the closer to "
                      "FP32 kept)."),
    click.option("--activation-range", type=click.Choice(["minmax", "mean-minmax"]), default=None,
                 help="INT8 activation ranges: global min/max over the calibration images, or the mean of each "
                      "image's (NNCF's default); default: minmax, then the winning recipe with mean-minmax."),
    click.option("--no-bias-correction", is_flag=True,
                 help="Turn NNCF's bias correction off (its full variant fails on exported ViT graphs in NNCF 3.4)."),
    click.option("--ignore", multiple=True, help="Node name or op type to keep in floating point (repeatable)."),
    click.option("--max-accuracy-drop", type=float, default=None,
                 help="Accuracy-controlled INT8: allowed top-1 drop in points (needs labelled --validate data)."),
    click.option("--budget", is_flag=True,
                 help="Make the gate thresholds (--min-agreement, --max-top1-drop, --min-cosine) the INT8 target: "
                      "return the fewest operations to float until they hold on --validate data (labels optional)."),
)

VALIDATION = (
    click.option("--validate", "validate_data", help="Check parity on this data right after converting."),
    click.option("--validate-limit", type=click.IntRange(1), default=None,
                 help="Validate on a seeded sample of N items, stratified by class when labelled."),
)

EXPORT = (
    click.option("--opset", type=click.IntRange(17, 23), default=None, help="ONNX opset (default 18)."),
    click.option("--tolerance", type=float, default=None, help="Export parity tolerance (default 1e-4)."),
    click.option("--dynamic-size", is_flag=True, help="Export a dynamic height/width axis."),
)


def pop(kwargs: dict, names) -> dict:
    """Take ``names`` out of a command's keyword arguments (for passing them on as one group)."""
    return {name: kwargs.pop(name) for name in names}
