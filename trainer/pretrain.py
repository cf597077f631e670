"""Self-supervised pretraining of the image branch on your own frames (SimCLR), labels unused.

An astronomer labels a few hundred frames but has tens of thousands more. ``skyshard pretrain``
teaches the image branch what frames look like from all of them: two randomly augmented views
of each frame (crop, rotation, flips, brightness, contrast, noise: ``[augment.policies]``,
``pretrain.policy``) must embed close to each other and far from the other frames of the batch
(the NT-Xent loss of SimCLR, Chen et al. 2020). ``skyshard train --set model.encoder=OUT`` then
starts the classifier's image branch from these weights instead of from random ones.

In: one or more export folders (labelled exports contribute the splits named in
``pretrain.splits``, by default ``train``, so validation and test frames stay unseen; an
unlabelled export, ``skyshard export --unlabeled --like``, contributes its ``score`` split).
All must share the image size and preprocessing. Out: a folder with ``encoder.keras`` (image
``float16 [B,S,S,1]`` -> embedding; loads with ``safe_mode=True``), ``pretrain.json`` (config,
exports and their manifest sha256, history, peak RSS, seconds, versions),
``pretrain_curves.png`` and ``tensorboard/`` (with ``train.tensorboard``). Streaming and bounded
like training: an interleaved, byte-budgeted shuffle of the shards, nothing held in memory, the
RSS watched against ``memory.ram_budget_gb``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from skyshard import __version__, schema
from skyshard.files import atomic_output, read_json, sha256_file, write_json_atomic
from skyshard.locks import FolderLock, is_lock_file
from skyshard.manifest import Manifest, ManifestError, ModelInputs, manifest_path
from skyshard.memory import RssMonitor
from skyshard.versions import library_versions
from trainer import data
from trainer.augment import make_image_augmenter, named_policy
from trainer.callbacks import EpochScalars, MemoryBudgetExceeded
from trainer.config import ConfigError
from trainer.layers import Cast
from trainer.models import image_branch
from trainer.plots import plot_history
from trainer.records import decode_image

ENCODER_FILE = "encoder.keras"
PRETRAIN_FILE = "pretrain.json"
CURVES_FILE = "pretrain_curves.png"
TENSORBOARD_DIR = "tensorboard"

#: What an encoder must share with the model it initialises (``[model]`` keys).
ARCHITECTURE_KEYS = ("name", "filters", "head", "norm", "norm_groups")
#: What the frames it learned from must share with the training export (manifest fields).
IMAGE_FIELDS = ("image_size", "image_dtype", "preprocessing")


# -- the frames ---------------------------------------------------------------------------------

def pretraining_shards(exports: Sequence[tuple[Path, Manifest]],
                       splits: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Gather the shards to pretrain on.

    Parameters
    ----------
    exports : sequence of (Path, manifest)
        Export folder and manifest of each export.
    splits : sequence of str
        The splits to use; a split an export lacks is skipped.

    Returns
    -------
    paths : list of str
        The shard files of those splits in every export.
    summary : list of dict
        Per export, for ``pretrain.json``: ``path``, ``manifest_sha256``, the ``splits`` used and
        their ``records``.

    Raises
    ------
    ManifestError
        No shard is left.
    """
    paths: list[str] = []
    summary = []
    for export_dir, manifest in exports:
        used = [s for s in splits if s in manifest.splits]
        records = sum(int(manifest.splits[s].count) for s in used)
        for split in used:
            paths.extend(manifest.shard_paths(export_dir, split))
        summary.append({"path": str(export_dir.resolve()),
                        "manifest_sha256": sha256_file(manifest_path(export_dir)),
                        "splits": used, "records": records})
    if not paths:
        raise ManifestError(f"no shards of the splits {list(splits)} in "
                            f"{[str(e) for e, _ in exports]}")
    return paths, summary


def image_fields(manifest: ModelInputs) -> dict[str, Any]:
    """The :data:`IMAGE_FIELDS` of an export as JSON (what ``pretrain.json`` records as
    ``image``)."""
    inputs = manifest.inputs_json()
    return {field: inputs[field] for field in IMAGE_FIELDS}


def check_same_images(exports: Sequence[tuple[Path, Manifest]]) -> None:
    """Check that all exports hold the same kind of image.

    Parameters
    ----------
    exports : sequence of (Path, manifest)
        Export folder and manifest of each export.

    Raises
    ------
    ManifestError
        An export whose ``image_size``, ``image_dtype`` or ``preprocessing`` differs from the
        first one's.
    """
    first_dir, first = exports[0]
    for export_dir, manifest in exports[1:]:
        ours, theirs = image_fields(manifest), image_fields(first)
        for field in IMAGE_FIELDS:
            if ours[field] != theirs[field]:
                raise ManifestError(
                    f"{export_dir} and {first_dir} differ in {field!r} ({ours[field]!r} "
                    f"vs {theirs[field]!r}); pretrain on exports of the same image kind "
                    "(skyshard export --like)")


def view_pairs(paths: Sequence[str], manifest: ModelInputs, config: Mapping[str, Any]
               ) -> tf.data.Dataset:
    """The endless stream of pairs of views: two independent augmentations of the same frames.

    Parameters
    ----------
    paths : sequence of str
        The shard files (interleaved, shuffled in a byte-budgeted buffer, repeated).
    manifest
        A manifest of the exports (``image_size``).
    config : mapping
        The configuration (``pretrain.policy``, ``pretrain.batch_size``, ``[data]``,
        ``train.seed``).

    Returns
    -------
    tf.data.Dataset
        ``(view_a, view_b)`` float16 batches ``[B,S,S,1]`` of ``pretrain.batch_size``.
    """
    seed = int(config["train"]["seed"])
    image_size = int(manifest.image_size)
    spec = {schema.IMAGE: tf.io.FixedLenFeature([], tf.string)}
    augment = make_image_augmenter(view_policy(config), config["augment"])

    def two_views(serialised):
        image = decode_image(tf.io.parse_single_example(serialised, spec)[schema.IMAGE],
                             image_size)
        return augment(image), augment(image)

    ds = data.interleaved_records(list(paths), int(config["data"]["cycle_length"]), seed)
    ds = ds.shuffle(data.shuffle_buffer_records(manifest, config, n_streams=1), seed=seed,
                    reshuffle_each_iteration=True).repeat()
    ds = ds.map(two_views, num_parallel_calls=data.AUTOTUNE, deterministic=False)
    ds = ds.batch(int(config["pretrain"]["batch_size"]), drop_remainder=True)
    return ds.prefetch(data.AUTOTUNE).with_options(data.dataset_options(config))


def view_policy(config: Mapping[str, Any]) -> dict[str, Any]:
    """The augmentation policy of the views.

    Parameters
    ----------
    config : mapping
        The configuration; ``pretrain.policy`` names an ``[augment.policies]`` entry (checked by
        :func:`trainer.config.validate`).

    Returns
    -------
    dict
        The resolved policy. It applies whatever ``augment.enabled`` says, since the views are
        what pretraining learns from.
    """
    return named_policy(config["pretrain"]["policy"], config["augment"])


# -- the networks and the loss ------------------------------------------------------------------

def build_encoder(model_config: Mapping[str, Any], image_size: int) -> keras.Model:
    """The classifier's image branch alone.

    Layer names are the classifier's (:func:`trainer.models.image_branch`), which is how
    :func:`initialise_from_encoder` finds where each weight belongs.

    Parameters
    ----------
    model_config : mapping
        The ``[model]`` table.
    image_size : int
        The side ``S`` of the images.

    Returns
    -------
    keras.Model
        ``image`` float16 ``[B,S,S,1]`` -> embedding ``[B, D]``, named ``encoder``.
    """
    image = keras.Input((image_size, image_size, 1), dtype="float16", name=schema.IMAGE)
    x = Cast("float32", name="image_float32")(image)
    return keras.Model(image, image_branch(model_config["name"], x, model_config),
                       name="encoder")


def build_projector(units: int, width: int) -> keras.Sequential:
    """SimCLR's projection head, used for the loss only, then discarded.

    Parameters
    ----------
    units : int
        The projection's width (``pretrain.projection_units``).
    width : int
        The hidden layer's width.

    Returns
    -------
    keras.Sequential
        Dense ReLU ``width`` -> Dense ``units``.
    """
    return keras.Sequential([layers.Dense(width, activation="relu", name="projection_hidden"),
                             layers.Dense(units, name="projection")], name="projector")


def nt_xent(z_a: tf.Tensor, z_b: tf.Tensor, temperature: float) -> tuple[tf.Tensor, tf.Tensor]:
    """SimCLR's normalised temperature-scaled cross-entropy (NT-Xent) over a batch of pairs.

    Each of the ``2N`` views must pick its partner among the other ``2N - 1`` by cosine
    similarity / ``temperature``.

    Parameters
    ----------
    z_a, z_b : tf.Tensor
        ``[N, D]`` projections of the two views of ``N`` frames.
    temperature : float
        The softmax temperature.

    Returns
    -------
    loss : tf.Tensor
        Scalar, the mean cross-entropy over the ``2N`` views.
    pair_accuracy : tf.Tensor
        Scalar, the share of views whose most similar other view is their partner.
    """
    z = tf.math.l2_normalize(tf.concat([z_a, z_b], axis=0), axis=1)
    n = tf.shape(z_a)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits -= 1e9 * tf.eye(2 * n, dtype=logits.dtype)  # a view is not its own partner
    partner = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(partner, logits))
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), partner),
                   tf.float32)
    return loss, tf.reduce_mean(hits)


# -- the run ------------------------------------------------------------------------------------

def pretrain(export_dirs: Sequence[str | Path], out_dir: str | Path, config: Mapping[str, Any],
             *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Pretrain an encoder on the frames of one or more exports.

    Parameters
    ----------
    export_dirs : sequence of str or Path
        The export folders; their shards are verified against their manifests before any work.
    out_dir : str or Path
        The output folder, new or empty: ``encoder.keras``, ``pretrain.json``,
        ``pretrain_curves.png``, ``tensorboard/`` (with ``train.tensorboard``).
    config : mapping
        The configuration (``[pretrain]``, ``[model]``, ``[augment]``, ``[data]``, ``[memory]``,
        ``train.seed``, ``train.tensorboard``).
    echo : callable, default print
        Receives the progress lines.

    Returns
    -------
    dict
        The ``pretrain.json`` record (also written when the run fails, with its status).

    Raises
    ------
    ManifestError, ShardIntegrityError
        Unusable exports.
    ConfigError
        A bad configuration or an occupied ``out_dir``.
    MemoryBudgetExceeded
        The RSS passed ``memory.ram_budget_gb``.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    exports = [(Path(e), Manifest.read(e)) for e in export_dirs]
    check_same_images(exports)
    splits = list(config["pretrain"]["splits"])
    for export_dir, manifest in exports:
        manifest.verify_shards(export_dir, [s for s in splits if s in manifest.splits])
    paths, summary = pretraining_shards(exports, splits)
    with FolderLock(out_dir, "skyshard pretrain"):
        if any(not is_lock_file(p.name) for p in out_dir.iterdir()):
            raise ConfigError(f"{out_dir} is not empty; choose a new folder")
        return _pretrain(exports, paths, summary, out_dir, config, started, echo)


def _pretrain(exports, paths, summary, out_dir: Path, config: Mapping[str, Any],
              started: float, echo: Callable[[str], None]) -> dict:
    """:func:`pretrain`'s training, holding ``out_dir``'s lock."""

    pre = config["pretrain"]
    keras.utils.set_random_seed(int(config["train"]["seed"]))
    image_size = int(exports[0][1].image_size)
    records = sum(e["records"] for e in summary)
    batch_size = int(pre["batch_size"])
    steps = max(1, records // batch_size)
    epochs = int(pre["epochs"])
    encoder = build_encoder(config["model"], image_size)
    projector = build_projector(int(pre["projection_units"]), int(config["model"]["image_units"]))
    optimizer = keras.optimizers.AdamW(
        learning_rate=keras.optimizers.schedules.CosineDecay(
            float(pre["learning_rate"]), decay_steps=epochs * steps, alpha=0.01),
        weight_decay=float(pre["weight_decay"]))
    step = contrastive_step(encoder, projector, optimizer, float(pre["temperature"]))

    record = _new_record(config, exports, summary, encoder)
    write_json_atomic(out_dir / PRETRAIN_FILE, record)  # a failed run still says what it was
    budget_mb = float(config["memory"]["ram_budget_gb"]) * 1024
    monitor = RssMonitor(interval=float(config["memory"]["sample_seconds"]), budget_mb=budget_mb)
    scalars = (EpochScalars(out_dir / TENSORBOARD_DIR) if config["train"]["tensorboard"]
               else None)
    echo(f"pretraining {config['model']['name']} encoder ({encoder.count_params():,} "
         f"parameters) on {records} frames of {len(exports)} export(s): {epochs} epochs x "
         f"{steps} steps of {batch_size} pairs")
    history: dict[str, list[float]] = {"loss": [], "pair_accuracy": []}
    try:
        with monitor:
            _fit(step, iter(view_pairs(paths, exports[0][1], config)), epochs, steps, history,
                 monitor, scalars, lambda: float(optimizer.learning_rate), echo)
    except (Exception, KeyboardInterrupt) as exc:
        status = "memory_exceeded" if isinstance(exc, MemoryBudgetExceeded) else "interrupted"
        record.update(status=status, error=f"{type(exc).__name__}: {exc}", history=history,
                      epochs_completed=len(history["loss"]), updated=_now(),
                      peak_rss_mb=round(monitor.peak_mb, 1),
                      seconds=round(time.monotonic() - started, 2))
        write_json_atomic(out_dir / PRETRAIN_FILE, record)
        raise
    finally:
        if scalars is not None:
            scalars.on_train_end()
    _save_encoder(encoder, out_dir)
    record.update(status="completed", history=history, epochs_completed=epochs,
                  peak_rss_mb=round(monitor.peak_mb, 1),
                  seconds=round(time.monotonic() - started, 2), updated=_now())
    write_json_atomic(out_dir / PRETRAIN_FILE, record)
    plot_history({"loss": history["loss"], "accuracy": history["pair_accuracy"]},
                 out_dir / CURVES_FILE, title=f"{out_dir.name}: contrastive pretraining "
                 "(accuracy = pair found)")
    echo(f"completed: {epochs} epoch(s) in {record['seconds']:.1f}s, peak RSS "
         f"{record['peak_rss_mb']:.0f} MB; final loss {history['loss'][-1]:.4f}\n"
         f"encoder: {out_dir / ENCODER_FILE}  (skyshard train EXPORT RUN --set "
         f"model.encoder={out_dir})")
    return record


def contrastive_step(encoder: keras.Model, projector: keras.Model, optimizer,
                     temperature: float):
    """Make one SimCLR update of encoder and projector, as a compiled ``tf.function``.

    Parameters
    ----------
    encoder, projector : keras.Model
        The networks to train.
    optimizer : keras.optimizers.Optimizer
        Their optimiser.
    temperature : float
        NT-Xent's temperature.

    Returns
    -------
    callable
        ``step(view_a, view_b) -> (loss, pair_accuracy)`` on a batch of view pairs.
    """
    @tf.function
    def step(view_a, view_b):
        with tf.GradientTape() as tape:
            z_a = projector(encoder(view_a, training=True), training=True)
            z_b = projector(encoder(view_b, training=True), training=True)
            loss, accuracy = nt_xent(z_a, z_b, temperature)
        variables = encoder.trainable_variables + projector.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, accuracy

    return step


def _fit(step, pairs, epochs: int, steps: int, history: dict[str, list[float]],
         monitor: RssMonitor, scalars: EpochScalars | None, learning_rate: Callable[[], float],
         echo: Callable[[str], None]) -> None:
    """Run the pretraining epochs: ``steps`` updates each, the means appended to ``history``, one
    progress line and TensorBoard scalars per epoch; raise :class:`MemoryBudgetExceeded` at the
    first step after the monitor saw the budget passed.
    """
    for epoch in range(1, epochs + 1):
        tick = time.monotonic()
        losses, accuracies = [], []
        for _ in range(steps):
            loss, accuracy = step(*next(pairs))
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            if monitor.exceeded_mb is not None:
                raise MemoryBudgetExceeded(
                    f"memory budget exceeded: pretraining's RSS reached "
                    f"{monitor.exceeded_mb:.0f} MB in epoch {epoch}, above the budget of "
                    f"{monitor.budget_mb:.0f} MB (--ram-budget-gb). Lower pretrain.batch_size "
                    "or data.shuffle_buffer_mb.")
        history["loss"].append(float(np.mean(losses)))
        history["pair_accuracy"].append(float(np.mean(accuracies)))
        if scalars is not None:
            scalars.on_epoch_end(epoch - 1, {"loss": history["loss"][-1],
                                             "pair_accuracy": history["pair_accuracy"][-1],
                                             "learning_rate": learning_rate()})
        echo(f"epoch {epoch}/{epochs}: loss {history['loss'][-1]:.4f}, pair accuracy "
             f"{history['pair_accuracy'][-1]:.3f} ({time.monotonic() - tick:.1f}s, RSS "
             f"{monitor.sample():.0f} MB)")


def _save_encoder(encoder: keras.Model, out_dir: Path) -> None:
    """Save the encoder atomically as ``out_dir/encoder.keras``."""
    with atomic_output(out_dir / ENCODER_FILE) as partial:
        encoder.save(partial)


def _new_record(config, exports, summary, encoder) -> dict[str, Any]:
    """Return the ``pretrain.json`` record of a starting run (status ``running``)."""
    first = exports[0][1]
    return {
        "kind": "pretrain", "skyshard_version": __version__, "status": "running",
        "created": _now(), "command": " ".join(sys.argv),
        "method": "SimCLR (NT-Xent), two augmented views per frame, labels unused",
        "config": {"pretrain": config["pretrain"], "model": config["model"],
                   "policy": view_policy(config), "seed": int(config["train"]["seed"])},
        "architecture": {key: config["model"][key] for key in ARCHITECTURE_KEYS},
        "image": image_fields(first),
        "exports": summary, "params": int(encoder.count_params()),
        "files": {"encoder": ENCODER_FILE, "curves": CURVES_FILE,
                  "tensorboard": TENSORBOARD_DIR if config["train"]["tensorboard"] else None},
        "versions": library_versions(),
    }


def _now() -> str:
    """Return the current UTC time in ISO format, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- using an encoder ---------------------------------------------------------------------------

def encoder_path(path: str | Path) -> Path:
    """The encoder file of a pretrain folder or path.

    Parameters
    ----------
    path : str or Path
        A pretrain output folder or a ``.keras`` file.

    Returns
    -------
    Path
        ``path/encoder.keras`` for a folder, else ``path`` itself.
    """
    path = Path(path)
    return path / ENCODER_FILE if path.is_dir() else path


def read_encoder_record(path: str | Path) -> dict[str, Any]:
    """Read the ``pretrain.json`` beside an encoder.

    Parameters
    ----------
    path : str or Path
        A pretrain output folder or its ``encoder.keras``.

    Returns
    -------
    dict
        The record.

    Raises
    ------
    ConfigError
        There is no ``pretrain.json``.
    """
    record_path = encoder_path(path).parent / PRETRAIN_FILE
    if not record_path.is_file():
        raise ConfigError(f"model.encoder: {record_path} not found (give the folder "
                          "`skyshard pretrain` wrote)")
    return read_json(record_path)


def check_encoder_fits(record: Mapping[str, Any], model_config: Mapping[str, Any],
                       manifest: ModelInputs) -> None:
    """Check that an encoder fits a run: the same architecture, and images like the run's.

    Parameters
    ----------
    record : mapping
        The encoder's ``pretrain.json``.
    model_config : mapping
        The run's ``[model]`` table.
    manifest
        The run's export manifest.

    Raises
    ------
    ConfigError
        Listing each ``[model]`` key and image field that differs.
    """
    arch = record["architecture"]
    wrong = [f"model.{key} ({arch.get(key)!r} in the encoder, {model_config[key]!r} here)"
             for key in ARCHITECTURE_KEYS if arch.get(key) != model_config[key]]
    image = image_fields(manifest)
    wrong += [f"the export's {field} ({record['image'].get(field)!r} in the encoder's exports, "
              f"{image[field]!r} here)"
              for field in IMAGE_FIELDS if record["image"].get(field) != image[field]]
    if wrong:
        raise ConfigError("model.encoder does not fit this run: " + "; ".join(wrong))


def checked_encoder(config: Mapping[str, Any], manifest: ModelInputs
                    ) -> tuple[Path, dict[str, Any]]:
    """Find ``model.encoder`` and check that it fits the run.

    Cheap, so a run can refuse a wrong encoder before it starts.

    Parameters
    ----------
    config : mapping
        The run's configuration (``model.encoder``).
    manifest
        The run's export manifest.

    Returns
    -------
    path : Path
        The encoder file.
    record : dict
        Its ``pretrain.json``.

    Raises
    ------
    ConfigError
        No such file, no ``pretrain.json``, or an encoder that does not fit.
    """
    path = encoder_path(config["model"]["encoder"])
    if not path.is_file():
        raise ConfigError(f"model.encoder: no such file {str(path)!r}")
    record = read_encoder_record(path)
    check_encoder_fits(record, config["model"], manifest)
    return path, record


def initialise_from_encoder(model: keras.Model, config: Mapping[str, Any],
                            manifest: ModelInputs) -> dict[str, Any]:
    """Copy a pretrained encoder's weights into a model's image branch.

    Every encoder layer with weights is copied into the model's layer of the same name, which is
    frozen unless ``model.train_encoder`` is on.

    Parameters
    ----------
    model : keras.Model
        The classifier, built with the encoder's architecture.
    config : mapping
        The run's configuration (``model.encoder``, ``model.train_encoder``).
    manifest
        The run's export manifest.

    Returns
    -------
    dict
        What run.json records: the encoder's path and sha256, the layers copied, whether they
        train, and a summary of its pretraining.

    Raises
    ------
    ConfigError
        The encoder is missing or does not fit the run.
    """
    path, record = checked_encoder(config, manifest)
    encoder = keras.saving.load_model(path, safe_mode=True, compile=False)
    copied = 0
    for layer in encoder.layers:
        if not layer.weights:
            continue
        target = model.get_layer(layer.name)
        target.set_weights(layer.get_weights())
        target.trainable = bool(config["model"]["train_encoder"])
        copied += 1
    return {"path": str(path.resolve()), "sha256": sha256_file(path), "layers": copied,
            "trained": bool(config["model"]["train_encoder"]),
            "pretrain": {"records": sum(e["records"] for e in record["exports"]),
                         "epochs": record.get("epochs_completed"),
                         "final_loss": (record.get("history", {}).get("loss") or [None])[-1],
                         "skyshard_version": record.get("skyshard_version")}}
