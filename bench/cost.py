"""Measure 4: training cost per model and image size.

For each image branch (the default separable CNN, the simple CNN, ResNet50V2) and each image
size, the model is built and compiled exactly as ``skyshard train`` builds it
(``trainer.models.build_model``, AdamW, label-smoothed cross-entropy, accuracy and macro-F1) for
the benchmark export's features, and trained on one fixed random batch of 8 with
``train_on_batch``: ``warm`` steps first (the first one traces the graph), then as many timed
steps as fit in ``budget_s`` (at least ``min_steps``, at most ``max_steps``).

Reported per configuration: ms per step and per image, the first step's seconds (tracing),
``model.count_params()``, and forward FLOPs per image counted two ways:

* **analytic**: 2 x the multiply-accumulates of every ``Conv2D``, ``DepthwiseConv2D``,
  ``SeparableConv2D``, ``Dense`` (once per token when it is applied to a sequence) and
  ``MultiHeadAttention`` layer (its four projections and the two attention products; nested
  models included), from the layers' static shapes: the figure used in the tables;
* **profiler**: ``tf.compat.v1.profiler`` ``float_operation`` over the graph of
  ``tf.function(model).get_concrete_function`` at batch 1, as a cross-check; TensorFlow only
  registers FLOPs for some ops (here ``Conv2D``: not depthwise convolutions, nor matrix products
  whose weights are variables), so it is a lower bound.

Run as ``python -m bench.cost EXPORT --json OUT [--models ...] [--sizes ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from skyshard.manifest import Manifest

MODELS = ("separable", "simple_cnn", "resnet50v2")
#: Configuration overrides of the measured names that are not a ``model.name`` of their own.
MODEL_OVERRIDES = {"vit_tiny_hybrid": {"model.name": "vit_tiny", "model.vit_stem": "conv"}}
SIZES = (128, 224, 350)
BATCH = 8


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer's forward pass for one image (0 for other layers)."""
    import keras

    if isinstance(layer, keras.layers.SeparableConv2D):
        out_h, out_w = layer.output.shape[1:3]
        in_c = layer.input.shape[-1]
        kh, kw = layer.kernel_size
        depthwise = out_h * out_w * kh * kw * in_c * layer.depth_multiplier
        return int(depthwise + out_h * out_w * in_c * layer.depth_multiplier * layer.filters)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out_h, out_w = layer.output.shape[1:3]
        kh, kw = layer.kernel_size
        return int(out_h * out_w * kh * kw * layer.input.shape[-1] * layer.depth_multiplier)
    if isinstance(layer, keras.layers.Conv2D):
        out_h, out_w = layer.output.shape[1:3]
        kh, kw = layer.kernel_size
        in_c = layer.input.shape[-1] // layer.groups
        return int(out_h * out_w * kh * kw * in_c * layer.filters)
    if isinstance(layer, keras.layers.Dense):
        tokens = math.prod(layer.input.shape[1:-1])  # 1 for [B, F]; T for [B, T, F]
        return int(tokens * layer.input.shape[-1] * layer.units)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        query, value = (layer.input if isinstance(layer.input, (list, tuple))
                        else (layer.input, layer.input))[:2]
        n_query, n_key = math.prod(query.shape[1:-1]), math.prod(value.shape[1:-1])
        heads, key_dim = layer.num_heads, layer.key_dim
        value_dim = layer.value_dim or key_dim
        projections = (n_query * query.shape[-1] * heads * key_dim          # query
                       + n_key * value.shape[-1] * heads * key_dim          # key
                       + n_key * value.shape[-1] * heads * value_dim        # value
                       + n_query * heads * value_dim * layer.output.shape[-1])  # output
        attention = n_query * n_key * heads * (key_dim + value_dim)  # q.k, then weights.v
        return int(projections + attention)
    return 0


def analytic_flops(model) -> int:
    """2 x MACs of the model's conv and dense layers, recursing into nested models."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += analytic_flops(layer)
        else:
            total += 2 * layer_macs(layer)
    return total


def profiler_flops(model, manifest: Manifest, size: int) -> int:
    """``tf.compat.v1.profiler`` float operations of one forward pass at batch 1."""
    import tensorflow as tf

    specs = {
        "image": tf.TensorSpec([1, size, size, 1], tf.float16),
        "features": tf.TensorSpec([1, len(manifest.feature_names)], tf.float32),
        "confidences": tf.TensorSpec([1, len(manifest.confidence_names)], tf.float32),
    }
    graph = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(
        specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                         cmd="op", options=options)
    return int(info.total_float_ops)


def random_batch(manifest: Manifest, size: int, seed: int = 0):
    """One batch of 8 plausible inputs (images in [0, 1], features around the train mean)."""
    rng = np.random.default_rng(seed)
    n_features = len(manifest.feature_names)
    mean = np.array([m if m is not None and math.isfinite(m) else 0.0
                     for m in manifest.scaler.mean], dtype=np.float32)
    scale = np.array([s if s is not None and math.isfinite(s) and s > 0 else 1.0
                      for s in manifest.scaler.scale], dtype=np.float32)
    inputs = {
        "image": rng.random((BATCH, size, size, 1)).astype(np.float16),
        "features": (mean + scale * rng.standard_normal((BATCH, n_features))).astype(np.float32),
        "confidences": rng.random((BATCH, len(manifest.confidence_names))).astype(np.float32),
    }
    labels = np.eye(len(manifest.classes), dtype=np.float32)[
        rng.integers(0, len(manifest.classes), BATCH)]
    return inputs, labels


def model_cost(manifest: Manifest, name: str, size: int, *, warm: int, budget_s: float,
               min_steps: int, max_steps: int) -> dict[str, Any]:
    """Step time, parameters and FLOPs of one (model, image size)."""
    import keras

    from bench.pipeline import compiled_model
    from trainer.config import load_config
    from trainer.data import steps_per_epoch

    keras.backend.clear_session()
    config = load_config(overrides=MODEL_OVERRIDES.get(name, {"model.name": name}))
    sized = replace(manifest, image_size=size)
    model = compiled_model(config, sized, steps_per_epoch(manifest, config))
    inputs, labels = random_batch(manifest, size)
    started = time.perf_counter()
    model.train_on_batch(inputs, labels)
    first_step = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(max(0, warm - 1)):
        model.train_on_batch(inputs, labels)
    warm_step = (time.perf_counter() - started) / max(1, warm - 1) if warm > 1 else first_step
    steps = int(min(max_steps, max(min_steps, math.ceil(budget_s / max(warm_step, 1e-6)))))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(inputs, labels)
    seconds = time.perf_counter() - wall
    cpu_s = time.process_time() - cpu
    result = {
        "model": name, "image_size": size, "batch": BATCH, "steps": steps,
        "ms_per_step": 1000 * seconds / steps, "ms_per_image": 1000 * seconds / steps / BATCH,
        "cpu_ms_per_step": 1000 * cpu_s / steps, "first_step_s": first_step,
        "params": int(model.count_params()),
        "flops_per_image": analytic_flops(model),
        "profiler_flops_per_image": profiler_flops(model, sized, size),
    }
    result["gflops_per_s"] = 3 * result["flops_per_image"] * BATCH / (seconds / steps) / 1e9
    del model
    keras.backend.clear_session()
    return result


def measure_cost(export_dir: Path, models: tuple[str, ...], sizes: tuple[int, ...], *,
                 warm: int, budget_s: float, min_steps: int, max_steps: int) -> dict[str, Any]:
    """Measure 4 as a dict: one row per (model, size)."""
    manifest = Manifest.read(export_dir)
    rows = [model_cost(manifest, name, size, warm=warm, budget_s=budget_s,
                       min_steps=min_steps, max_steps=max_steps)
            for name in models for size in sizes]
    return {"export": str(export_dir), "batch": BATCH, "rows": rows,
            "flops_method": "analytic 2 x MACs of Conv2D/DepthwiseConv2D/SeparableConv2D/Dense "
                            "(per token)/MultiHeadAttention layers (forward, per image); "
                            "profiler figure: "
                            "tf.compat.v1.profiler float_operation (Conv2D only)",
            "gflops_note": "gflops_per_s assumes a training step costs 3 x the forward pass"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost")
    parser.add_argument("export", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=6.0,
                        help="time the timed steps aim at per configuration")
    parser.add_argument("--min-steps", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=20)
    args = parser.parse_args(argv)
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    result = measure_cost(args.export, tuple(args.models), tuple(args.sizes), warm=args.warm,
                          budget_s=args.budget_s, min_steps=args.min_steps,
                          max_steps=args.max_steps)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
