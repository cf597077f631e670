"""Accuracy ablation: train named variants of the default recipe on a sample export, several seeds
each, within a time budget, and tabulate what each measure really gives.

    python -m research.ablate --export EXPORT --variants base,no_gating,simple_gap --seeds 3 \\
        --budget-minutes 40 --out ablation.json --markdown ablation.md

Each variant is a dict of dotted config overrides on ``trainer/default.toml`` (see
:data:`VARIANTS`; ``--set KEY=VALUE`` adds overrides to every variant, e.g. fewer epochs). Every
(variant, seed) trains in a fresh run folder under ``--scratch``, in its own process, so the peak
RSS in its ``run.json`` is that run's alone. The trained model is then scored on the test split
twice: as exported, and with **headers stripped** (every header-group feature NaN and every header
confidence 0: what a TIFF or a header-less FITS looks like). The table: macro-F1 mean ± std over
seeds (normal and stripped), per-class F1 of the hard pairs (bias vs darks, deep sky vs spectra),
training seconds and peak RSS. The validation split is scored the same two ways: it also picks
each run's best epoch, so it is a slightly optimistic second sample, but with the test split it
doubles the frames a variant is judged on; the table adds every seed's errors on both splits
(one test frame is ~0.013 of macro-F1 on a 6 x 100 sample: counts resolve what means cannot).
When the budget is spent no new run starts; the table says which runs were skipped.

A variant that needs another image size names it (``"image_size": 224``); give that export with
``--export-size 224=DIR``.

``--ensemble`` also averages each variant's seed runs with ``skyshard ensemble`` (the mean of
their probabilities, one model) and scores that the same two ways: a second table puts the
ensemble next to the mean of its single seeds.

``--kfold K`` measures k-fold training with model averaging instead of single runs: each
(variant, seed) trains K runs, run k validating on the records of fold k and training on the
other folds of train + val pooled (``data.fold = k``; the export needs ``--folds K``), and their
average (``skyshard ensemble``) is what is scored. Every member has seen the validation split,
so only the test split is scored; train seconds are the members' sum.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from skyshard.files import write_text_atomic
from skyshard.manifest import Manifest

#: Classes whose F1 the table shows: the hard pairs.
HARD_CLASSES = ("bias", "darks", "deep_sky", "spectrum")

#: Named variants: overrides on the default recipe, and an optional image size.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "no_gating": {"features.confidence_gating": False},
    "no_clip": {"features.clip": 0.0},
    "norm_group": {"model.norm": "group"},
    "early_stop_f1": {"train.monitor": "val_f1_macro", "train.patience": 8},
    "epochs_20": {"train.epochs": 20},
    "epochs_30": {"train.epochs": 30},
    "epochs_60": {"train.epochs": 60},
    "no_header_dropout": {"features.header_dropout": 0.0},
    "header_dropout_0.5": {"features.header_dropout": 0.5},
    "no_header": {"features.header": False},
    "no_pixel": {"features.pixel": False},
    "no_domain": {"features.domain": False},
    "no_pixel_domain": {"features.pixel": False, "features.domain": False},
    "simple_gap": {"model.name": "simple_cnn", "model.head": "gap"},
    "simple_flatten": {"model.name": "simple_cnn", "model.head": "flatten"},
    "class_weights": {"train.class_weights": "balanced", "data.balance_power": 1.0},
    "focal": {"train.loss": "focal", "train.focal_alpha": "balanced"},
    "natural_sampling": {"data.balance_power": 1.0},
    "smoothing_0": {"train.label_smoothing": 0.0},
    "smoothing_0.1": {"train.label_smoothing": 0.1},
    "cosine_restarts": {"train.schedule": "cosine_restarts"},
    "constant_lr": {"train.schedule": "constant"},
    "no_weight_decay": {"train.weight_decay": 0.0},
    "no_augment": {"augment.enabled": False},
    "randaugment": {"augment.randaugment": True},
    "mixup": {"augment.mixup": True},
    "cutmix": {"augment.cutmix": True},
    "batch32_accum4": {"train.gradient_accumulation_steps": 4},
    "batch32": {"train.batch_size": 32},
    "size224": {"image_size": 224},
    "size350": {"image_size": 350},
    "resnet50v2": {"model.name": "resnet50v2"},
    "efficientnetv2b0": {"model.name": "efficientnetv2b0"},
    "vit_tiny": {"model.name": "vit_tiny"},
    "vit_tiny_hybrid": {"model.name": "vit_tiny", "model.vit_stem": "conv"},
    "wide": {"model.filters": [32, 64, 128]},
    # Start the image branch from a `skyshard pretrain` encoder (--encoder DIR).
    "pretrained": {"model.encoder": None},
    "pretrained_frozen": {"model.encoder": None, "model.train_encoder": False},
}

#: Overrides that make ``--quick`` a seconds-long smoke run.
QUICK_OVERRIDES = {"train.epochs": 1, "train.steps_per_epoch": 2, "train.tensorboard": False,
                   "train.patience": 0, "model.filters": [4, 8], "model.image_units": 8,
                   "model.feature_units": 8}


# -- headers stripped ---------------------------------------------------------------------------

def header_indices(manifest: Manifest) -> list[int]:
    """Columns of the manifest's ``feature_groups["header"]``."""
    return manifest.header_columns()


def strip_headers(manifest: Manifest):
    """A ``tf.data`` map over parsed batches: every frame header-less (header-group features
    NaN, all confidences 0), as the trainer's header dropout does to some train frames."""
    import tensorflow as tf

    from skyshard import schema
    from trainer.augment import blank_headers

    columns = set(header_indices(manifest))
    header_mask = tf.constant([i in columns for i in range(len(manifest.feature_names))])

    def strip(batch: dict) -> dict:
        every = tf.ones_like(batch[schema.LABEL], dtype=tf.bool)
        return blank_headers(batch, every, header_mask)

    return strip


def score_split(model, export_dir: str | Path, manifest: Manifest, split: str,
                stripped: bool) -> dict[str, Any]:
    """Macro-F1, accuracy, per-class F1 and the confusion matrix of ``model`` on ``split``;
    ``rules``: the macro-F1 and per-class F1 after the shipped post-processing rules, which
    ``skyshard score`` and ``evaluate`` apply by default (the answer a user gets)."""
    import numpy as np

    from evaluation.rules import RuleSet, default_rules
    from skyshard import schema
    from trainer.data import eval_dataset
    from trainer.records import model_inputs

    ds = eval_dataset(export_dir, manifest, split)
    if stripped:
        ds = ds.map(strip_headers(manifest))
    truth, probs, features, confidences = [], [], [], []
    for batch in ds:
        probs.append(np.asarray(model(model_inputs(batch), training=False)))
        truth.append(batch[schema.LABEL].numpy())
        features.append(batch[schema.FEATURES].numpy())
        confidences.append(batch[schema.CONFIDENCES].numpy())
    y, probs = np.concatenate(truth), np.concatenate(probs)
    rules = RuleSet(default_rules(), list(manifest.classes), list(manifest.feature_names),
                    list(manifest.confidence_names), strict=False)
    with_rules, _ = rules.apply(probs, np.concatenate(features), np.concatenate(confidences))
    result = _f1_summary(y, np.argmax(probs, axis=-1), list(manifest.classes))
    ruled = _f1_summary(y, with_rules, list(manifest.classes))
    result["rules"] = {"macro_f1": ruled["macro_f1"], "per_class_f1": ruled["per_class_f1"]}
    return result


#: Result key -> (split, headers stripped): every trained model is scored these four ways.
SCORES = {"test": ("test", False), "test_stripped": ("test", True),
          "val": ("val", False), "val_stripped": ("val", True)}


def score_all(model, export_dir: str | Path, manifest: Manifest) -> dict[str, Any]:
    """:func:`score_split` for every entry of :data:`SCORES`."""
    return {key: score_split(model, export_dir, manifest, split, stripped)
            for key, (split, stripped) in SCORES.items()}


def _f1_summary(y, p, classes: Sequence[str]) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(len(classes)))
    per_class = f1_score(y, p, labels=labels, average=None, zero_division=0)
    return {"macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y, p)),
            "per_class_f1": {c: round(float(f), 4) for c, f in zip(classes, per_class)},
            "confusion_matrix": confusion_matrix(y, p, labels=labels).tolist(), "n": int(len(y)),
            "errors": int((np.asarray(y) != np.asarray(p)).sum())}


# -- one run (in its own process) ---------------------------------------------------------------

def run_one(export_dir: str, run_dir: str, overrides: Mapping[str, Any], result_path: str
            ) -> dict[str, Any]:
    """Train ``overrides`` on ``export_dir`` into ``run_dir``; score test and validation, normal
    and stripped (:data:`SCORES`)."""
    import keras

    from skyshard.run_record import MODEL_FILE
    from trainer.config import load_config
    from trainer.train import train

    config = load_config(overrides=dict(overrides))
    record = train(export_dir, run_dir, config, echo=lambda line: print(line, flush=True))
    manifest = Manifest.read(export_dir)
    model = keras.saving.load_model(Path(run_dir) / MODEL_FILE, safe_mode=True)
    result = {
        "status": record.status, "epochs": record.epochs_completed,
        "best_epoch": record.best_epoch, "train_seconds": record.seconds,
        "peak_rss_mb": record.peak_rss_mb, "params": record.model.params,
        "val_macro_f1": (record.best or {}).get("val_f1_macro"),
        **score_all(model, export_dir, manifest),
    }
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def ensemble_one(export_dir: str, run_dirs: Sequence[str], ensemble_dir: str, result_path: str
                 ) -> dict[str, Any]:
    """Average ``run_dirs`` into ``ensemble_dir`` (:func:`trainer.ensemble.build_ensemble`);
    score it like :func:`run_one`."""
    from trainer.ensemble import build_ensemble
    from trainer.model_io import load_model

    record = build_ensemble(run_dirs, ensemble_dir, echo=lambda line: print(line, flush=True))
    manifest = Manifest.read(export_dir)
    model = load_model(ensemble_dir)
    result = {
        "members": len(run_dirs), "ensemble_dir": str(ensemble_dir),
        "params": record.model.params, "seconds": record.seconds,
        **score_all(model, export_dir, manifest),
    }
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


# -- the table ----------------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def summarise(variant: str, spec: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
              planned: int) -> dict[str, Any]:
    done = [r for r in runs if "test" in r]
    row: dict[str, Any] = {"variant": variant, "overrides": dict(spec), "seeds_planned": planned,
                           "seeds_done": len(done),
                           "failed": [r.get("error") for r in runs if "error" in r]}
    for key in SCORES:
        m, s = mean_std([r[key]["macro_f1"] for r in done if key in r])
        row[f"{key}_macro_f1_mean"], row[f"{key}_macro_f1_std"] = m, s
        ruled = [r[key]["rules"]["macro_f1"] for r in done if "rules" in r.get(key, {})]
        m, s = mean_std(ruled) if len(ruled) == len(done) else (math.nan, math.nan)
        row[f"{key}_rules_macro_f1_mean"], row[f"{key}_rules_macro_f1_std"] = m, s
    for mode in ("", "_stripped"):  # every seed's errors on val and test (NaN: not scored)
        scored = [r.get(split + mode) for r in done for split in ("val", "test")]
        row[f"errors_val_test{mode}"] = (sum(map(errors, scored)) if all(scored)
                                          else math.nan)
        tests = [r.get("test" + mode) or {} for r in done]
        row[f"errors_test{mode}"] = (sum(map(errors, tests)) if all(
            "errors" in t or "confusion_matrix" in t for t in tests) else math.nan)
    row["per_class_f1"] = {c: mean_std([r["test"]["per_class_f1"].get(c, math.nan)
                                        for r in done])[0] for c in HARD_CLASSES}
    row["per_class_f1_stripped"] = {c: mean_std([r["test_stripped"]["per_class_f1"].get(
        c, math.nan) for r in done])[0] for c in HARD_CLASSES}
    row["train_seconds_mean"] = mean_std([r["train_seconds"] for r in done])[0]
    row["peak_rss_mb_max"] = max((r["peak_rss_mb"] for r in done), default=math.nan)
    row["epochs_mean"] = mean_std([r["epochs"] for r in done])[0]
    return row


def errors(result: Mapping[str, Any]) -> int:
    """Frames a scored split got wrong (from the confusion matrix for reports that predate
    the ``errors`` field)."""
    if "errors" in result:
        return int(result["errors"])
    matrix = result["confusion_matrix"]
    return int(sum(map(sum, matrix)) - sum(matrix[i][i] for i in range(len(matrix))))


def _f(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    short = {"bias": "bias", "darks": "darks", "deep_sky": "deep sky",
             "spectrum": "spectra"}
    head = ("| variant | seeds | macro-F1 test | macro-F1 headers stripped | "
            "test, with rules | stripped, with rules | macro-F1 val | val stripped | "
            "errors val+test, all seeds (normal / stripped) | "
            + " | ".join(f"F1 {short[c]}" for c in HARD_CLASSES)
            + " | F1 stripped bias/darks/deep/spec | epochs | train s | peak RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    skipped = {s["variant"] for s in report["skipped"]}
    for row in report["rows"]:
        if not row["seeds_done"]:
            why = ("not run: budget spent" if row["variant"] in skipped
                   else "failed" if row["failed"] else "pending")
            lines.append(f"| {row['variant']} | 0/{row['seeds_planned']} | {why}"
                         + " |" * (head.count("|") - 3))
            continue
        stripped = "/".join(_f(row["per_class_f1_stripped"][c], 2) for c in HARD_CLASSES)
        def spread(key: str) -> str:  # no ± for a single seed
            mean = row.get(key + "_mean", math.nan)
            std = (f" ± {_f(row[key + '_std'])}" if row["seeds_done"] > 1
                   and not math.isnan(mean) else "")
            return _f(mean) + std

        lines.append(
            f"| {row['variant']} | {row['seeds_done']}/{row['seeds_planned']} | "
            f"{spread('test_macro_f1')} | {spread('test_stripped_macro_f1')} | "
            f"{spread('test_rules_macro_f1')} | {spread('test_stripped_rules_macro_f1')} | "
            f"{spread('val_macro_f1')} | {spread('val_stripped_macro_f1')} | "
            f"{error_counts(row)} | "
            + " | ".join(_f(row["per_class_f1"][c], 2) for c in HARD_CLASSES)
            + f" | {stripped} | {_f(row['epochs_mean'], 1)} | {_f(row['train_seconds_mean'], 0)}"
            f" | {_f(row['peak_rss_mb_max'], 0)} |")
    merged = (f" (merged from {report['merged_from']} reports; budgets and time added up)"
              if report.get("merged_from") else "")
    notes = [f"Export: `{report['export']}` ({report['export_summary']}); "
             f"common overrides: `{json.dumps(report['common_overrides'])}`; seeds "
             f"{report['seeds']}; budget {report['budget_minutes']} min, used "
             f"{report['elapsed_minutes']:.1f} min{merged}."]
    if report["skipped"]:
        notes.append("Budget spent before: " + ", ".join(
            f"{s['variant']} seed {s['seed']}" for s in report["skipped"]) + ".")
    text = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    if report.get("ensembles"):
        text += "\n" + ensemble_table(report) + "\n"
    return text


def error_counts(row: Mapping[str, Any]) -> str:
    """"normal / stripped" errors on val + test; on test alone where val was not scored
    (``--kfold``: every member trained on it)."""
    both = row.get("errors_val_test", math.nan)
    test = row.get("errors_test", math.nan)
    if isinstance(both, float) and math.isnan(both) and not math.isnan(test):
        return (f"{_f(test, 0)} / {_f(row.get('errors_test_stripped', math.nan), 0)}"
                " (test only)")
    return f"{_f(both, 0)} / {_f(row.get('errors_val_test_stripped', math.nan), 0)}"


def ensemble_table(report: Mapping[str, Any]) -> str:
    """Each variant's mean-of-seeds ensemble next to the mean of its single seeds."""
    rows = {row["variant"]: row for row in report["rows"]}
    head = ("| variant: ensemble of its seeds | seeds averaged | macro-F1 test | "
            "macro-F1 headers stripped | test, with rules | stripped, with rules | "
            "val / val stripped | single seeds: test / stripped (mean) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, result in report["ensembles"].items():
        if "error" in result:
            lines.append(f"| {name} | – | failed" + " |" * (head.count("|") - 3))
            continue
        single = rows.get(name, {})
        lines.append(
            f"| {name} | {result['members']} | {_f(result['test']['macro_f1'])} | "
            f"{_f(result['test_stripped']['macro_f1'])} | "
            f"{_f(result['test']['rules']['macro_f1'])} | "
            f"{_f(result['test_stripped']['rules']['macro_f1'])} | "
            f"{_f(result.get('val', {}).get('macro_f1', math.nan))} / "
            f"{_f(result.get('val_stripped', {}).get('macro_f1', math.nan))} | "
            f"{_f(single.get('test_macro_f1_mean'))} / "
            f"{_f(single.get('test_stripped_macro_f1_mean'))} |")
    return "\n".join(lines)


# -- driver -------------------------------------------------------------------------------------

def resolve_variants(names: Sequence[str], extra: Mapping[str, Any] | None = None,
                     encoder: str | None = None) -> dict[str, dict[str, Any]]:
    """The named variants' overrides; ``encoder`` fills the pretrained variants'
    ``model.encoder`` (a ``skyshard pretrain`` folder)."""
    known = {**VARIANTS, **(extra or {})}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {sorted(known)}")
    variants = {n: dict(known[n]) for n in names}
    for name, spec in variants.items():
        if "model.encoder" in spec and spec["model.encoder"] is None:
            if not encoder:
                raise SystemExit(f"variant {name!r} needs --encoder DIR (skyshard pretrain)")
            spec["model.encoder"] = str(Path(encoder).resolve())
    return variants


def export_summary(export_dir: str | Path) -> str:
    manifest = Manifest.read(export_dir)
    counts = {s: manifest.split_records(s) for s in ("train", "val", "test")}
    return (f"{len(manifest.classes)} classes, image {manifest.image_size}, "
            f"train/val/test {counts['train']}/{counts['val']}/{counts['test']}")


def ablate(export_dir: str, variants: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
           budget_minutes: float, scratch: Path, common: Mapping[str, Any],
           exports_by_size: Mapping[int, str], out: Path | None = None,
           markdown: Path | None = None, echo=print, jobs: int = 1,
           ensemble: bool = False, kfold: int = 0) -> dict[str, Any]:
    """Run every (variant, seed), seed-major (every variant's first seed before any second one,
    so a spent budget still leaves each variant measured), ``jobs`` at a time, and write the
    report after every finished run. No run starts once ``budget_minutes`` have passed.
    ``ensemble``: then average each variant's finished seeds (two or more) and score that too
    (``report["ensembles"]``), whatever the budget: it trains nothing. ``kfold``: each
    (variant, seed) is a ``kfold``-member k-fold ensemble (:func:`_kfold_and_score`)."""
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    skipped: list[dict[str, Any]] = []
    scratch.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    queue = [(name, seed) for seed in seeds for name in variants]
    lock = threading.Lock()

    def one(name: str, seed: int) -> None:
        elapsed = (time.monotonic() - started) / 60
        if elapsed >= budget_minutes:
            with lock:
                skipped.append({"variant": name, "seed": seed})
            return
        spec = variants[name]
        overrides = {**common, **{k: v for k, v in spec.items() if k != "image_size"},
                     "train.seed": int(seed)}
        export = _variant_export(spec, export_dir, exports_by_size)
        if export is None:
            with lock:
                runs[name].append({"seed": seed, "error": "no export of image size "
                                   f"{spec['image_size']} (--export-size SIZE=DIR)"})
            return
        run_dir = scratch / f"{stamp}-{name}-s{seed}"
        echo(f"[{elapsed:5.1f} min] {name} seed {seed}: {json.dumps(overrides)}"
             + (f", {kfold}-fold ensemble" if kfold else ""))
        result = (_kfold_and_score(export, run_dir, overrides, kfold, echo) if kfold
                  else _train_and_score(export, run_dir, overrides))
        result["seed"] = seed
        with lock:
            runs[name].append(result)
            if "error" in result:
                echo(f"    {name} seed {seed} failed: {result['error'][-200:]}")
            else:
                val = (f"; val {result['val']['macro_f1']:.3f} / "
                       f"{result['val_stripped']['macro_f1']:.3f}" if "val" in result else "")
                echo(f"    {name} seed {seed}: test macro-F1 {result['test']['macro_f1']:.3f}, "
                     f"headers stripped {result['test_stripped']['macro_f1']:.3f}{val}; "
                     f"{result['epochs']} epochs, {result['train_seconds']:.0f} s, "
                     f"peak RSS {result['peak_rss_mb']:.0f} MB")
            _write(_report(export_dir, variants, seeds, runs, skipped, budget_minutes, common,
                           started), out, markdown)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, name, seed) for name, seed in queue]:
            future.result()
    report = _report(export_dir, variants, seeds, runs, skipped, budget_minutes, common, started)
    if ensemble:
        report["ensembles"] = ensemble_variants(
            variants, runs, export_dir, exports_by_size, scratch, stamp, echo)
    _write(report, out, markdown)
    if skipped:
        echo(f"time budget of {budget_minutes} min spent: {len(skipped)} run(s) not started")
    return report


def _variant_export(spec: Mapping[str, Any], export_dir: str,
                    exports_by_size: Mapping[int, str]) -> str | None:
    """The export a variant trains on (``None``: its image size has no export)."""
    size = spec.get("image_size")
    return exports_by_size.get(int(size)) if size else export_dir


def ensemble_variants(variants, runs, export_dir, exports_by_size, scratch: Path, stamp: str,
                      echo) -> dict[str, dict[str, Any]]:
    """variant -> :func:`ensemble_one`'s result (or ``error``) for every variant with two or
    more finished seeds, each in a fresh process."""
    ensembles: dict[str, dict[str, Any]] = {}
    for name, spec in variants.items():
        run_dirs = [r["run_dir"] for r in runs[name] if "test" in r]
        if len(run_dirs) < 2:
            continue
        folder = scratch / f"{stamp}-{name}-ensemble"
        ensembles[name] = _worker(
            ["--ensemble-worker", "--export", _variant_export(spec, export_dir, exports_by_size),
             "--run", str(folder), "--members", json.dumps(run_dirs)], folder)
        if "error" in ensembles[name]:
            echo(f"    {name} ensemble failed: {ensembles[name]['error'][-200:]}")
        else:
            echo(f"    {name} ensemble of {len(run_dirs)} seeds: test macro-F1 "
                 f"{ensembles[name]['test']['macro_f1']:.3f}, headers stripped "
                 f"{ensembles[name]['test_stripped']['macro_f1']:.3f}")
    return ensembles


def _train_and_score(export: str, run_dir: Path, overrides: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """:func:`run_one` in a fresh process (its own peak RSS); the result, or ``error``."""
    result = _worker(["--worker", "--export", str(export), "--run", str(run_dir),
                      "--overrides", json.dumps(overrides)], run_dir)
    return result if "error" in result else {"run_dir": str(run_dir), **result}


def _kfold_and_score(export: str, run_dir: Path, overrides: Mapping[str, Any], folds: int,
                     echo=print) -> dict[str, Any]:
    """Train one run per fold (``data.fold`` = 0 .. ``folds`` - 1) under ``run_dir``, average
    them (:func:`ensemble_one`, in a fresh process) and return the ensemble's test scores like
    :func:`run_one`'s (the validation split, trained on by every member, is left out), or
    ``error``. ``train_seconds``: the members' sum; ``peak_rss_mb``: the largest."""
    exported = int(Manifest.read(export).split.folds or 0)
    if exported != folds:
        return {"error": f"the export has {exported} folds, --kfold asks for {folds} "
                         f"(export with --folds {folds})"}
    run_dir.mkdir(parents=True, exist_ok=True)
    members = []
    for fold in range(folds):
        member = _train_and_score(export, run_dir / f"fold{fold}",
                                  {**overrides, "data.fold": fold})
        if "error" in member:
            return {"error": f"fold {fold}: {member['error']}"}
        echo(f"      fold {fold}: {member['epochs']} epochs, {member['train_seconds']:.0f} s")
        members.append(member)
    folder = run_dir / "ensemble"
    result = _worker(["--ensemble-worker", "--export", str(export), "--run", str(folder),
                      "--members", json.dumps([m["run_dir"] for m in members])], folder)
    if "error" in result:
        return result
    return {"run_dir": str(folder), "status": "finished", "folds": folds,
            "epochs": sum(m["epochs"] for m in members) / folds,
            "best_epoch": [m["best_epoch"] for m in members],
            "train_seconds": sum(m["train_seconds"] for m in members),
            "peak_rss_mb": max(m["peak_rss_mb"] for m in members),
            "params": result["params"],
            **{key: result[key] for key in ("test", "test_stripped")}}


def _worker(arguments: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """``python -m research.ablate ARGUMENTS --result RUN.result.json`` in a fresh process, its
    output in ``RUN.log``; the result JSON, or ``error`` with the log's tail."""
    result_path = run_dir.parent / f"{run_dir.name}.result.json"  # names may hold dots
    log_path = run_dir.parent / f"{run_dir.name}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "research.ablate", *arguments, "--result", str(result_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-400:]
        return {"error": f"exit {proc.returncode} (log {log_path}): {tail}"}
    return json.loads(result_path.read_text(encoding="utf-8"))


def _report(export_dir, variants, seeds, runs, skipped, budget_minutes, common, started):
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export": str(export_dir), "export_summary": export_summary(export_dir),
        "seeds": list(seeds), "budget_minutes": budget_minutes,
        "elapsed_minutes": (time.monotonic() - started) / 60,
        "common_overrides": dict(common), "skipped": list(skipped),
        "rows": [summarise(name, variants[name], runs[name], len(seeds)) for name in variants],
        "runs": runs,
    }


def _write(report, out: Path | None, markdown: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(report, indent=1, allow_nan=True))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(markdown_table(report), encoding="utf-8")


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report from several ablation runs on the same export (e.g. a 3-seed run of the main
    variants and a 1-seed run of the rest, run side by side, then the runs a spent budget
    skipped): the runs of a variant are pooled and its row recomputed; a run skipped in one
    report but done in another is no longer listed as skipped. A report whose common overrides
    differ from the first report's labels its variants with them (``resnet50v2
    [train.epochs=3]``): those rows are not like for like."""
    first = reports[0]
    base_common = first["common_overrides"]
    runs: dict[str, list] = {}
    specs: dict[str, Mapping[str, Any]] = {}
    planned_done: dict[str, int] = {}  # most seeds a report where the variant ran planned
    planned_any: dict[str, int] = {}
    skipped = []
    for report in reports:
        extra = {k: v for k, v in report["common_overrides"].items()
                 if base_common.get(k) != v}
        label = " [" + ", ".join(f"{k}={v}" for k, v in extra.items()) + "]" if extra else ""
        for row in report["rows"]:
            name = row["variant"] + label
            specs.setdefault(name, row["overrides"])
            runs.setdefault(name, []).extend(report["runs"].get(row["variant"], []))
            planned_any.setdefault(name, row["seeds_planned"])
            if row["seeds_done"]:
                planned_done[name] = max(planned_done.get(name, 0), row["seeds_planned"])
        skipped.extend({**s, "variant": s["variant"] + label} for s in report["skipped"])
    done_names = {name for name, rs in runs.items() if any("test" in r for r in rs)}
    skipped = [s for s in skipped if s["variant"] not in done_names]
    # Seeds planned: the most any report planned, or the distinct seeds run, when reports ran
    # further seeds of it (seeds 2-3 after a report that ran seed 1 of 3 makes 3, not 5).
    planned = {name: max(planned_done.get(name, planned_any[name]),
                         len({r.get("seed") for r in runs[name] if "test" in r}))
               for name in runs}
    return {**first, "rows": [summarise(name, specs[name], runs[name], planned[name])
                              for name in runs],
            "runs": runs, "skipped": skipped,
            "ensembles": {name: result for r in reports
                          for name, result in (r.get("ensembles") or {}).items()},
            "seeds": sorted({s for r in reports for s in r["seeds"]}),
            "budget_minutes": sum(r["budget_minutes"] for r in reports),
            "elapsed_minutes": sum(r["elapsed_minutes"] for r in reports),
            "merged_from": len(reports)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m research.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", help="labelled export folder")
    parser.add_argument("--variants", default="base",
                        help=f"comma-separated, from: {','.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds per variant (1..N, see --first-seed); one test frame moves macro-F1 by about "
                             "the spread of 3 seeds, so 5 is the default")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="seeds are FIRST .. FIRST+SEEDS-1 (default 1): more seeds for a "
                             "report already made, to --merge with it")
    parser.add_argument("--budget-minutes", type=float, default=60.0,
                        help="start no run after this many minutes")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        help="KEY=VALUE override for every variant (repeatable)")
    parser.add_argument("--encoder", metavar="DIR",
                        help="a `skyshard pretrain` folder for the pretrained* variants")
    parser.add_argument("--export-size", action="append", default=[],
                        help="SIZE=DIR: the export for variants with image_size SIZE")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (each in its own process; train seconds then "
                             "include the contention)")
    parser.add_argument("--scratch", default="/tmp/skyshard-ablate",
                        help="run folders are created here")
    parser.add_argument("--out", default=None, help="JSON report")
    parser.add_argument("--markdown", default=None, help="markdown table")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 epoch of 2 steps, tiny model")
    parser.add_argument("--ensemble", action="store_true",
                        help="also average each variant's seeds (skyshard ensemble) and score "
                             "that: a second table, ensemble vs single seeds")
    parser.add_argument("--kfold", type=int, default=0, metavar="K",
                        help="score k-fold ensembles instead of single runs: per seed, one run "
                             "per fold of an export made with --folds K, averaged; test only")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="no training: merge earlier reports into --out / --markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ensemble-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--members", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_one(args.export, args.run, json.loads(args.overrides), args.result)
        return 0
    if args.ensemble_worker:
        ensemble_one(args.export, json.loads(args.members), args.run, args.result)
        return 0
    if args.merge:
        report = merge_reports([json.loads(Path(p).read_text(encoding="utf-8"))
                                for p in args.merge])
        _write(report, Path(args.out) if args.out else None,
               Path(args.markdown) if args.markdown else None)
        print(markdown_table(report))
        return 0
    if not args.export:
        raise SystemExit("--export is required (or --merge)")
    if args.kfold == 1 or args.kfold < 0:
        raise SystemExit("--kfold needs at least 2 folds")
    from trainer.config import parse_assignment

    common = {**(QUICK_OVERRIDES if args.quick else {}),
              **dict(parse_assignment(a) for a in args.assignments)}
    exports_by_size = {}
    for item in args.export_size:
        size, _, folder = item.partition("=")
        exports_by_size[int(size)] = folder
    variants = resolve_variants([v.strip() for v in args.variants.split(",") if v.strip()],
                                encoder=args.encoder)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    report = ablate(args.export, variants, seeds, args.budget_minutes,
                    Path(args.scratch), common, exports_by_size,
                    Path(args.out) if args.out else None,
                    Path(args.markdown) if args.markdown else None, jobs=args.jobs,
                    ensemble=args.ensemble, kfold=args.kfold)
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
