"""Measure 2: the trainer's input pipeline against the from_generator sketch and the model's
appetite.

Three rates in examples per second, side by side in one process:

* **stream**: ``trainer.data.train_dataset`` (the trainer's own builder, default configuration:
  per-class interleave, byte-budgeted shuffle, per-class augmentation, class-balanced
  ``sample_from_datasets``, batch 8, prefetch) over an export, iterated without a model, after
  a few warm-up batches;
* **from_generator**: the ``Dataset.from_generator`` sketch proposed in place of the original
  loader (:func:`bench.baselines.sketch_dataset`) reading the same frames' FITS/TIFF files on
  the fly, one full pass (its ``shuffle(1024)`` fills before the first batch, so a pass is the unit);
* **model**: the default model's ``train_on_batch`` at batch 8 on one fixed in-memory batch
  (nothing to wait for): how fast training can consume examples at all.

And the check that matters: the same model trained with ``model.fit`` on the stream, whose rate
must equal the model's own (the stream never being what limits training). The stream, the model
and ``fit`` alternate over a few rounds and the best round of each counts, so that a burst of
other load on the shared machine does not pass for a slow pipeline or a slow model.

Run as ``python -m bench.pipeline EXPORT TREE --json OUT`` (a fresh TensorFlow process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from skyshard.manifest import Manifest


def _timed_batches(iterator, batches: int) -> tuple[int, float, float]:
    """Pull ``batches`` batches; ``(examples, wall s, CPU s)``."""
    examples = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        inputs, _labels = next(iterator)
        examples += int(inputs["image"].shape[0])
    return examples, time.perf_counter() - wall, time.process_time() - cpu


def stream_rate(export_dir: Path, manifest: Manifest, config: dict, warm: int,
                batches: int) -> dict[str, float]:
    """Examples/s of the trainer's train stream without a model."""
    from trainer.data import train_dataset

    iterator = iter(train_dataset(export_dir, manifest, config))
    _timed_batches(iterator, warm)
    examples, wall, cpu = _timed_batches(iterator, batches)
    return {"examples": examples, "seconds": wall, "cpu_s": cpu,
            "examples_per_s": examples / wall}


def generator_rate(tree: Path, image_size: int, batch_size: int) -> dict[str, float]:
    """Examples/s of one full pass of the ``from_generator`` sketch over ``tree``."""
    from bench.baselines import list_frames, sketch_dataset

    items = list_frames(tree)
    dataset = sketch_dataset(items, size=image_size, batch_size=batch_size)
    examples = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for image, _features, _confidences, _label in dataset:
        examples += int(image.shape[0])
    seconds = time.perf_counter() - wall
    return {"examples": examples, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "examples_per_s": examples / seconds}


def compiled_model(config: dict, manifest: Manifest, steps_per_epoch: int):
    """The model as ``skyshard train`` builds and compiles it (optimiser, loss, metrics)."""
    from trainer.data import class_counts, sampling_weights
    from trainer.models import build_model
    from trainer.optim import make_loss, make_metrics, make_optimizer

    weights = sampling_weights(class_counts(manifest, "train"), config["data"]["balance_power"])
    probabilities = [weights.get(name, 0.0) for name in manifest.classes]
    model = build_model(config, manifest)
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=make_loss(config, probabilities),
                  metrics=make_metrics(len(manifest.classes)))
    return model


def model_rate(model, batch, warm: int, steps: int) -> dict[str, float]:
    """Examples/s of ``train_on_batch`` on one fixed batch (after ``warm`` steps)."""
    inputs, labels = batch
    for _ in range(warm):
        model.train_on_batch(inputs, labels)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(inputs, labels)
    seconds = time.perf_counter() - wall
    examples = steps * int(inputs["image"].shape[0])
    return {"examples": examples, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "examples_per_s": examples / seconds, "ms_per_step": 1000 * seconds / steps}


def fit_rate(model, dataset, steps: int, warm: int = 0) -> dict[str, float]:
    """Examples/s of ``model.fit`` fed by the stream (after a ``warm``-step fit)."""
    if warm:
        model.fit(dataset, steps_per_epoch=warm, epochs=1, verbose=0)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - wall
    batch = int(next(iter(dataset))[0]["image"].shape[0])
    return {"examples": steps * batch, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "examples_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps}


def best_of(rounds: list[dict]) -> dict:
    """The fastest of several rounds (a shared machine only ever slows a round down), with
    every round's rate kept."""
    best = dict(max(rounds, key=lambda r: r["examples_per_s"]))
    best["rounds_examples_per_s"] = [r["examples_per_s"] for r in rounds]
    return best


def measure_pipeline(export_dir: Path, tree: Path, *, warm: int, batches: int,
                     model_steps: int, rounds: int = 3) -> dict[str, Any]:
    """Measure 2 as a dict (rates and the two target ratios). The stream without a model, the
    model's own rate and ``fit`` on the stream alternate for ``rounds`` rounds (``batches``
    batches, ``model_steps`` steps each); the best round of each counts. The sketch's
    ``from_generator`` pipeline makes one full pass."""
    from trainer.config import load_config
    from trainer.data import steps_per_epoch, train_dataset

    manifest = Manifest.read(export_dir)
    config = load_config()
    batch_size = int(config["train"]["batch_size"])
    generator = generator_rate(tree, int(manifest.image_size), batch_size)
    dataset = train_dataset(export_dir, manifest, config)
    model = compiled_model(config, manifest, steps_per_epoch(manifest, config))
    batch = next(iter(dataset))
    streams, own, fed = [], [], []
    for i in range(rounds):
        streams.append(stream_rate(export_dir, manifest, config, warm, batches))
        own.append(model_rate(model, batch, warm=3 if i == 0 else 0, steps=model_steps))
        fed.append(fit_rate(model, dataset, model_steps, warm=2 if i == 0 else 0))
    stream, consumption, fit = best_of(streams), best_of(own), best_of(fed)
    return {
        "export": str(export_dir), "image_size": int(manifest.image_size),
        "batch_size": batch_size, "model": config["model"]["name"],
        "params": int(model.count_params()), "rounds": rounds,
        "stream": stream, "from_generator": generator, "model_consumption": consumption,
        "fit_with_stream": fit,
        "stream_over_generator": stream["examples_per_s"] / generator["examples_per_s"],
        "stream_over_model": stream["examples_per_s"] / consumption["examples_per_s"],
        "fit_over_model": fit["examples_per_s"] / consumption["examples_per_s"],
    }


def pipeline_targets(result: dict) -> list[dict]:
    from bench.export_bench import target

    return [
        target("tf.data stream >= 5 x from_generator", result["stream_over_generator"], 5.0),
        target("tf.data stream >= 5 x model consumption", result["stream_over_model"], 5.0,
               note=f"fit on the stream runs at {result['fit_over_model']:.2f} x the "
                    "model's own rate"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("export", type=Path)
    parser.add_argument("tree", type=Path, help="the sample tree the export was made from")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--model-steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from skyshard.runtime import quiet_tensorflow

    quiet_tensorflow()
    result = measure_pipeline(args.export, args.tree, warm=args.warm, batches=args.batches,
                              model_steps=args.model_steps, rounds=args.rounds)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
