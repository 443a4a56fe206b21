"""Several NNCF post-training quantization recipes of one model, sharing their statistics passes.

Why: the statistics passes are most of an NNCF quantize (timm ViT-S, OpenVINO, 120 calibration images: 23 of
27 s; one pass for SmoothQuant, one for the quantizer ranges and the bias correction, each a full inference
of every calibration image with hundreds of extra outputs). The recipe search's candidates read the same
activations: SmoothQuant's statistics are those of the FP32 model whatever the preset, and the ranges of
every preset and range estimator on one (smoothed or not) model can be gathered in one pass. So instead of
a pass or two per candidate, all candidates cost one pass per distinct model they are measured on: two
for the whole search (the FP32 model, for SmoothQuant and the candidates without it; the smoothed model,
for the candidates with it).

How: NNCF's own post-training pipeline (``create_ptq_pipeline``: SmoothQuant, ChannelAlignment, then
MinMax with FastBiasCorrection) is built for each recipe; the pipelines are walked step by step together;
the statistic points of every step about to run on the same model object are collected by one aggregator;
steps before the last that are configured alike (SmoothQuant at one alpha) run once and their model is
shared. The last step of a recipe runs only when that recipe is asked for (:meth:`SharedQuantizer.quantize`),
from statistics collected up front. The result equals ``nncf.quantize`` with the same settings.
"""

from __future__ import annotations

import copy
from collections import defaultdict


class SharedQuantizer:
    """``SharedQuantizer(nncf, model, dataset, arguments)``: ``arguments`` maps a key (a recipe) to the keyword
    arguments ``nncf.quantize`` would take for it (preset, model_type, subset_size, fast_bias_correction,
    ignored_scope, advanced_parameters). Weights stay as float constants behind their quantizers (NNCF's
    weight compression is left to the caller: :func:`compress_weights`)."""

    def __init__(self, nncf, model, dataset, arguments: dict):
        from nncf.common.utils.backend import get_backend

        self._dataset = dataset
        self._backend = get_backend(model)
        self._model = _prepared(model)
        self._ready: dict = {}  # key -> (pipeline, step index, model, graph, statistics)
        self._setups: dict = {}  # (settings but the ranges, model id) -> (model, NNCF's quantizer setup)
        pipelines = {}
        for key, kwargs in arguments.items():
            pipelines[key] = _pipeline(nncf, kwargs)
            self._share_setup(pipelines[key], _setup_signature(kwargs))
        self._walk(pipelines)

    def quantize(self, key):
        """The model quantized with the recipe ``key`` (its last pipeline step run now, on a copy)."""
        pipeline, index, model, graph, statistics = self._ready[key]
        return pipeline.run_step(index, statistics, _copy(model), graph)

    def _share_setup(self, pipeline, signature: str) -> None:
        """Recipes that differ only in how ranges are estimated place the same quantizers: NNCF's search for
        where they go (pattern matching over the graph, 1.5-2 s on ViT-S) runs once for them."""
        from nncf.quantization.algorithms.min_max.algorithm import MinMaxQuantization

        for step in pipeline.pipeline_steps:
            for algorithm in step:
                if isinstance(algorithm, MinMaxQuantization):
                    own = algorithm.find_quantization_setup

                    def find(model, graph, own=own):
                        key = (signature, id(model))
                        if key not in self._setups:  # the model is kept too: its id must not be reused
                            self._setups[key] = (model, own(model, graph))
                        return copy.deepcopy(self._setups[key][1])

                    algorithm.find_quantization_setup = find

    def _walk(self, pipelines: dict) -> None:
        from nncf.common.factory import build_graph

        steps = {key: p._remove_unsupported_algorithms(self._backend) for key, p in pipelines.items()}
        position = {key: (self._model, 0) for key in pipelines}  # key -> (model the next step runs on, step)
        graphs = {id(self._model): build_graph(self._model)}
        while position:
            jobs = defaultdict(list)  # (model id, step, what the step is) -> keys; equal prefix steps run once
            points = {}
            for key in position:
                while True:
                    model, index = position[key]
                    last = index == len(steps[key]) - 1
                    job = (id(model), index, key if last else _signature(steps[key][index]))
                    if job not in points:
                        points[job] = pipelines[key].get_statistic_points_for_step(index, model, graphs[id(model)])
                    if last or points[job]:
                        jobs[job].append(key)
                        break
                    position[key] = (model, index + 1)  # nothing to measure, so nothing to do (no pattern matched)
            by_model = defaultdict(list)
            for job in jobs:
                by_model[job[0]].append(job)
            for model_id, model_jobs in by_model.items():
                model, graph = position[jobs[model_jobs[0]][0]][0], graphs[model_id]
                statistics = _collect([points[job] for job in model_jobs], model, graph, self._dataset)
                for job in model_jobs:
                    keys, index = jobs[job], job[1]
                    if index == len(steps[keys[0]]) - 1:  # a last step: run when asked for
                        self._ready[keys[0]] = (pipelines[keys[0]], index, model, graph, statistics)
                        del position[keys[0]]
                        continue
                    stepped = pipelines[keys[0]].run_step(index, statistics, _copy(model), graph)
                    graphs[id(stepped)] = build_graph(stepped)
                    for key in keys:
                        position[key] = (stepped, index + 1)


def _pipeline(nncf, kwargs: dict):
    from nncf.quantization.algorithms.post_training.pipeline import create_ptq_pipeline

    kwargs = dict(kwargs)
    preset = kwargs.pop("preset")
    return create_ptq_pipeline(preset=preset, target_device=nncf.TargetDevice.ANY, **kwargs)


def _setup_signature(kwargs: dict) -> str:
    """The settings that decide where quantizers go and how they are configured: all but the range estimators."""
    advanced = copy.copy(kwargs["advanced_parameters"])
    advanced.activations_range_estimator_params = None
    return repr({**kwargs, "advanced_parameters": advanced})


def _signature(step) -> tuple:
    """What a step before the last does: its algorithms and their settings (SmoothQuant's alphas)."""
    return tuple((type(a).__name__, repr(sorted(getattr(a, "_alpha_map", {}).items()))) for a in step)


def _collect(containers, model, graph, dataset):
    from nncf.quantization.algorithms.pipeline import collect_statistics

    return collect_statistics(containers, model, graph, dataset)


def _prepared(model):
    """What ``nncf.quantize`` does to a model before its pipeline runs."""
    if hasattr(model, "clone"):  # OpenVINO
        from nncf.openvino.graph.model_utils import remove_friendly_name_duplicates

        return remove_friendly_name_duplicates(model.clone())
    from nncf.onnx.graph.passes import apply_preprocess_passes

    return apply_preprocess_passes(copy.deepcopy(model))


def _copy(model):
    return model.clone() if hasattr(model, "clone") else copy.deepcopy(model)


def keep_float_weights(advanced) -> None:
    """Tell NNCF to leave the weights as float constants behind their quantizers (so a quantized operation can
    be returned to float by a graph edit); :func:`compress_weights` stores them as INT8 afterwards."""
    advanced.backend_params = {**(advanced.backend_params or {}), "compress_weights": False}


def compress_weights(model):
    """Fold each weight's quantizer into an INT8 constant, as ``nncf.quantize`` does by default."""
    if hasattr(model, "clone"):
        from openvino._offline_transformations import compress_quantize_weights_transformation

        compress_quantize_weights_transformation(model)
        return model
    from nncf.onnx.graph.passes import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(model)
    return model
