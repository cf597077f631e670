"""Trainer input pipeline: balanced sampling, per-class augmentation, MixUp/CutMix, evaluation
streams. Synthetic 32x32 exports keep each test to seconds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

tf = pytest.importorskip("tensorflow")

from skyshard import schema  # noqa: E402
from skyshard.example_proto import decode_example  # noqa: E402
from skyshard.manifest import Manifest  # noqa: E402
from skyshard.tfrecord import read_records  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from trainer import augment, data  # noqa: E402
from trainer.config import load_config  # noqa: E402

IMBALANCED = {"bias": 48, "darks": 12, "flats": 6}


@pytest.fixture(scope="module")
def imbalanced_export(tmp_path_factory):
    path = write_synthetic_export(tmp_path_factory.mktemp("imbalanced"),
                                  classes=tuple(IMBALANCED), train_shards=2,
                                  per_class={"train": IMBALANCED, "val": 5, "test": 3})
    return path, Manifest.read(path)


def _sampled_labels(export, manifest, balance_power, batches=150):
    config = load_config(overrides={"data.balance_power": balance_power,
                                    "augment.enabled": False, "train.seed": 7})
    ds = data.train_dataset(export, manifest, config)
    labels = [np.argmax(y, axis=-1) for _, y in ds.take(batches).as_numpy_iterator()]
    return np.bincount(np.concatenate(labels), minlength=len(IMBALANCED))


def test_balanced_stream_draws_classes_uniformly(imbalanced_export):
    """Statistical check: the class histogram of the default (balance_power 0) stream fits
    uniform frequencies and is far from the 8:2:1 natural ones."""
    export, manifest = imbalanced_export
    histogram = _sampled_labels(export, manifest, 0.0)
    total = histogram.sum()
    assert stats.chisquare(histogram, np.full(3, total / 3)).pvalue > 1e-3
    natural = np.array(list(IMBALANCED.values())) / sum(IMBALANCED.values())
    assert stats.chisquare(histogram, natural * total).pvalue < 1e-9


def test_balance_power_one_keeps_natural_frequencies(imbalanced_export):
    export, manifest = imbalanced_export
    histogram = _sampled_labels(export, manifest, 1.0)
    natural = np.array(list(IMBALANCED.values())) / sum(IMBALANCED.values())
    assert stats.chisquare(histogram, natural * histogram.sum()).pvalue > 1e-3


def test_sampling_weights_interpolate_and_skip_empty_classes():
    weights = data.sampling_weights({"a": 64, "b": 16, "c": 0}, 0.5)
    assert set(weights) == {"a", "b"}
    assert weights["a"] == pytest.approx(8 / 12)
    assert data.sampling_weights({"a": 64, "b": 16}, 0.0) == {"a": 0.5, "b": 0.5}


def test_shuffle_buffer_is_budgeted_in_bytes(imbalanced_export):
    _, manifest = imbalanced_export
    config = load_config(overrides={"data.shuffle_buffer_mb": 1})
    per_record = data.record_bytes(manifest)
    assert per_record > 32 * 32 * 2
    assert data.shuffle_buffer_records(manifest, config, 4) == (1 << 20) // 4 // per_record
    assert data.steps_per_epoch(manifest, config) == -(-66 // 8)


def _horizontal_band(size=32):
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    image = 0.05 + (0.4 + 0.5 * x) * np.exp(-((y - 0.5) ** 2) / 0.004)
    return tf.constant(image[..., None], tf.float16)


def _is_horizontal(image) -> bool:
    """Intensity varies much more across rows than along them: the band still lies flat."""
    a = np.asarray(image, np.float32)[..., 0]
    return np.abs(np.diff(a, axis=0)).mean() > 3 * np.abs(np.diff(a, axis=1)).mean()


def test_spectra_keep_their_orientation_under_their_policy():
    config = load_config()
    policy = augment.policy_for("spectrum", config["augment"])
    assert not policy["rotate90"] and not augment.is_identity(policy)
    spectrum = augment.make_image_augmenter(policy, config["augment"])
    band = _horizontal_band()
    outputs = [spectrum(band) for _ in range(40)]
    assert all(out.dtype == tf.float16 and out.shape == band.shape for out in outputs)
    assert all(_is_horizontal(out) for out in outputs)
    # the check has teeth: the sky policy (rot90) does turn the same band upright sometimes
    sky = augment.make_image_augmenter(augment.policy_for("deep_sky", config["augment"]),
                                       config["augment"])
    assert not all(_is_horizontal(sky(band)) for _ in range(40))


def test_calibration_frames_keep_their_pixel_statistics():
    config = load_config()
    policy = augment.policy_for("darks", config["augment"])
    darks = augment.make_image_augmenter(policy, config["augment"])
    frame = tf.constant(np.random.default_rng(0).random((32, 32, 1)), tf.float16)
    for _ in range(10):
        out = darks(frame).numpy()
        assert np.sort(out.ravel()).tolist() == np.sort(frame.numpy().ravel()).tolist()


def test_randaugment_is_a_config_switch():
    config = load_config(overrides={"augment.randaugment": True})
    policy = augment.policy_for("deep_sky", config["augment"])
    assert policy["randaugment"]
    assert not augment.policy_for("spectrum", config["augment"])["randaugment"]
    out = augment.make_image_augmenter(policy, config["augment"])(_horizontal_band())
    assert out.shape == (32, 32, 1) and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("switch", ["augment.mixup", "augment.cutmix"])
def test_mixing_blends_all_inputs_consistently_and_only_eligible_pairs(switch):
    classes = ["bias", "deep_sky", "planetary"]
    config = load_config(overrides={switch: True})
    mix = augment.make_batch_mixer(config["augment"], classes)
    labels = np.array([1, 2] * 16)
    inputs = {schema.IMAGE: tf.constant(np.random.default_rng(1).random((32, 8, 8, 1)),
                                        tf.float16),
              schema.FEATURES: tf.constant((labels == 2).astype(np.float32)[:, None]),
              schema.CONFIDENCES: tf.ones((32, 4))}
    mixed, soft = mix(inputs, tf.one_hot(labels, 3))
    # feature 0 was "is planetary": after mixing it equals the planetary share of the label
    np.testing.assert_allclose(mixed[schema.FEATURES][:, 0], soft[:, 2], atol=1e-5)
    assert mixed[schema.IMAGE].dtype == tf.float16
    assert np.ptp(soft.numpy()[:, 2]) > 0
    # bias is not in mix_classes: a batch of bias frames passes unchanged
    bias = {**inputs, schema.FEATURES: tf.zeros((32, 1))}
    same, hard = mix(bias, tf.one_hot(np.zeros(32, int), 3))
    np.testing.assert_array_equal(hard.numpy(), tf.one_hot(np.zeros(32, int), 3).numpy())
    np.testing.assert_array_equal(same[schema.IMAGE].numpy(), bias[schema.IMAGE].numpy())


def test_eval_dataset_is_sequential_complete_and_unaugmented(imbalanced_export):
    export, manifest = imbalanced_export
    stored = [decode_example(r) for path in manifest.shard_paths(export, "val")
              for r in read_records(path)]
    batches = list(data.eval_dataset(export, manifest, "val", batch_size=4).as_numpy_iterator())
    keys = [k.decode() for b in batches for k in b[schema.KEY]]
    assert keys == [r[schema.KEY].decode() for r in stored]
    first = batches[0]
    assert set(first) >= {schema.IMAGE, schema.FEATURES, schema.CONFIDENCES, schema.LABEL,
                          schema.KEY, schema.CLASS_NAME}
    assert first[schema.IMAGE].dtype == np.float16
    assert first[schema.IMAGE][0].tobytes() == stored[0][schema.IMAGE]


def test_validation_is_never_augmented(imbalanced_export):
    export, manifest = imbalanced_export
    config = load_config(overrides={"augment.default_policy": "sky", "augment.mixup": True,
                                    "augment.mix_classes": []})
    stored = [decode_example(r) for path in manifest.shard_paths(export, "val")
              for r in read_records(path)]
    images = np.concatenate([x[schema.IMAGE] for x, _ in
                             data.val_dataset(export, manifest, config).as_numpy_iterator()])
    assert [im.tobytes() for im in images] == [r[schema.IMAGE] for r in stored]


def test_kfold_pools_train_and_val_and_holds_out_one_fold(imbalanced_export):
    export, manifest = imbalanced_export
    config = load_config(overrides={"data.fold": 1, "augment.enabled": False})
    folds = data.count_folds(export, manifest)
    assert sum(folds.values()) == 66 + 15
    held_out = sum(n for (_, f), n in folds.items() if f == 1)
    val = data.val_dataset(export, manifest, config, records=held_out)
    assert sum(len(y) for _, y in val.as_numpy_iterator()) == held_out
    counts = data.train_counts(manifest, config, folds)
    assert sum(counts.values()) == 66 + 15 - held_out
    batch = next(iter(data.train_dataset(export, manifest, config, counts=counts)))
    assert batch[1].shape == (8, 3)


def test_header_dropout_blanks_whole_headers_of_some_frames(imbalanced_export):
    export, manifest = imbalanced_export
    header = manifest.header_columns()
    assert header
    config = load_config(overrides={"features.header_dropout": 0.5, "augment.enabled": False,
                                    "train.seed": 3})
    dropped = kept = 0
    for inputs, _ in data.train_dataset(export, manifest, config).take(30).as_numpy_iterator():
        blank = ~inputs["confidences"].any(axis=1)
        blanked_headers = np.isnan(inputs["features"][:, header]).all(axis=1)
        assert np.all(blanked_headers[blank])
        dropped += int(blank.sum())
        kept += int((~blank).sum())
    assert 0.3 < dropped / (dropped + kept) < 0.7


def test_header_dropout_off_or_without_header_group_is_no_map(imbalanced_export):
    _, manifest = imbalanced_export
    assert augment.make_header_dropout(manifest, 0.0) is None
    no_groups = replace(manifest, feature_groups={})
    assert augment.make_header_dropout(no_groups, 0.3) is None


def test_validation_keeps_headers_when_training_drops_them(imbalanced_export):
    export, manifest = imbalanced_export
    config = load_config(overrides={"features.header_dropout": 0.9})
    for inputs, _ in data.val_dataset(export, manifest, config).as_numpy_iterator():
        original = next(data.eval_dataset(export, manifest, "val").as_numpy_iterator())
        np.testing.assert_array_equal(inputs["confidences"], original["confidences"][
            :len(inputs["confidences"])])
        break
