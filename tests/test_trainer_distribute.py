"""Training beyond one device: clusters, each worker's part of the data, mixed precision, and
the mirrored strategy on two logical CPU devices (a fresh process: logical devices must be set
before TensorFlow starts). Two multiworker processes: test_trainer_multiworker.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from skyshard import schema  # noqa: E402
from skyshard.example_proto import decode_example  # noqa: E402
from skyshard.manifest import Manifest  # noqa: E402
from skyshard.run_record import Distribution, RunRecord  # noqa: E402
from export_helpers import json_from_fresh_process  # noqa: E402
from synthetic_export import write_synthetic_export  # noqa: E402
from cli import train as cli  # noqa: E402
from trainer.config import ConfigError, load_config  # noqa: E402
from trainer.distribute import (ClusterError, ClusterSpec, Placement, WorkerShard,  # noqa: E402
                                cluster_from_environment)
from trainer.optim import learning_rate  # noqa: E402

TINY = {"model.filters": [8, 16], "model.image_units": 16, "model.feature_units": 16,
        "train.epochs": 2, "train.steps_per_epoch": 4, "data.shuffle_buffer_mb": 1,
        "memory.sample_seconds": 0.1}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"),
                                  per_class={"train": 8, "val": 3, "test": 3}, train_shards=2)


def _train_cli(*argv) -> int:
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([str(a) for a in argv]), [])


# -- clusters -----------------------------------------------------------------------------------

def test_tf_config_names_the_chief_first_and_flags_write_it():
    text = json.dumps({"cluster": {"worker": ["10.0.0.2:2222", "10.0.0.3:2222"],
                                   "chief": ["10.0.0.1:2222"]},
                       "task": {"type": "worker", "index": 1}})
    spec = ClusterSpec.from_tf_config(text)
    assert spec.addresses == ("10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222")
    assert (spec.workers, spec.worker_index, spec.is_chief) == (3, 2, False)
    assert cluster_from_environment({"TF_CONFIG": text}) == spec
    assert cluster_from_environment({}) is None

    flags = ClusterSpec.from_flags("127.0.0.1:5000, 127.0.0.1:5001", 0)
    assert flags.is_chief and flags.workers == 2
    assert ClusterSpec.from_tf_config(flags.tf_config()) == flags


@pytest.mark.parametrize("text, named", [
    ("{not json", "not JSON"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker"}}', "'ps'"),
    ('{"cluster": {"worker": ["b:2"]}}', '"task"'),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "'nohost'"),
    ('{"cluster": {"worker": ["b:2", "b:2"]}, "task": {"type": "worker", "index": 0}}',
     "listed twice"),
    ('{"cluster": {"worker": ["b:2"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3"),
])
def test_an_unusable_tf_config_is_refused_naming_the_value(text, named):
    with pytest.raises(ClusterError, match=named):
        ClusterSpec.from_tf_config(text)


def test_worker_flags_are_checked_before_any_work(export, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    run = tmp_path / "run"
    assert _train_cli(export, run, "--workers", "127.0.0.1:5000") == 2
    assert "--workers and --worker-index go together" in capsys.readouterr().err
    assert _train_cli(export, run, "--workers", "127.0.0.1:5000", "--worker-index", "0") == 2
    assert "needs --strategy multiworker" in capsys.readouterr().err
    assert _train_cli(export, run, "--strategy", "multiworker", "--workers", "127.0.0.1:x",
                      "--worker-index", "0") == 2
    err = capsys.readouterr().err
    assert "'127.0.0.1:x' is not HOST:PORT" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"evaluator": ["a:1"]}, "task": {}}')
    assert _train_cli(export, run, "--strategy", "multiworker") == 2
    assert "evaluator" in capsys.readouterr().err
    assert not run.exists()


def test_the_configuration_names_a_strategy_and_a_precision_switch():
    assert load_config().get("train", {}).get("strategy") == "default"
    with pytest.raises(ConfigError, match="train.strategy must be one of"):
        load_config(overrides={"train.strategy": "tpu"})
    with pytest.raises(ConfigError, match="train.mixed_precision must be true or false"):
        load_config(overrides={"train.mixed_precision": "yes"})


def test_the_global_batch_must_split_evenly_over_the_replicas():
    placement = Placement("multiworker", strategy=None, workers=3, replicas=3)
    assert placement.replica_batch(9) == 3
    with pytest.raises(ValueError, match=r"train.batch_size = 8 .* 3 replicas"):
        placement.replica_batch(8)


def test_run_json_records_the_distribution_and_reads_older_runs():
    block = Distribution(strategy="multiworker", workers=2, replicas=4,
                         devices=("/job:worker/replica:0/task:0/device:GPU:0",), gpus=2,
                         mixed_precision=True)
    assert Distribution.from_json(block.to_json()) == block
    older = {"status": "completed", "export": {"classes": ["a"], "image_size": 8,
                                               "feature_names": [], "confidence_names": []}}
    assert RunRecord.from_json(older).distribution is None


# -- each worker's part of the data -------------------------------------------------------------

def _keys(dataset) -> list[str]:
    return [decode_example(raw)[schema.KEY].decode() for raw in dataset.as_numpy_iterator()]


@pytest.mark.parametrize("workers, how", [(2, "file"), (3, "record")])
def test_workers_read_parts_that_never_overlap_and_cover_every_record(export, workers, how):
    from trainer.data import worker_records

    manifest = Manifest.read(export)
    for class_name in manifest.classes:
        paths = manifest.shard_paths(export, "train", class_name)
        assert len(paths) == 2
        assert WorkerShard(0, workers).by_file(paths) == (how == "file")
        parts = [_keys(worker_records(paths, 4, seed=1, shard=WorkerShard(i, workers)))
                 for i in range(workers)]
        every = _keys(worker_records(paths, 4, seed=1))
        assert all(parts), f"a worker got no {class_name} record"
        assert sorted(k for part in parts for k in part) == sorted(every)


def test_the_learning_rate_schedule_counts_updates_when_the_loop_accumulates():
    config = load_config(overrides={"train.epochs": 4, "train.warmup_epochs": 1})
    steps, schedule = learning_rate(config, 12), learning_rate(config, 12, per_update=3)
    for update in (0, 2, 4, 9, 15):
        assert float(schedule(update)) == pytest.approx(float(steps(3 * update)), rel=1e-6)


# -- the loop's arithmetic ----------------------------------------------------------------------

def test_the_loop_applies_the_mean_gradient_of_the_accumulated_batches():
    """Two batches accumulated, one SGD update: the weights move by the mean of the two
    batches' mean-loss gradients, as one step over both batches would move them."""
    import tensorflow as tf

    from trainer.distribute import Placement
    from trainer.loop import DistributedLoop

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    placement = Placement("mirrored", strategy, replicas=1, devices=("/cpu:0",))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = tf.one_hot(rng.integers(0, 4, 8), 4)
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0),
                      loss=keras.losses.CategoricalCrossentropy())
        model.optimizer.build(model.trainable_variables)
    start = [w.copy() for w in model.get_weights()]
    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy()(y, model(x))
    expected = [w - g.numpy() for w, g in zip(start, tape.gradient(loss,
                                                                  model.trainable_variables))]

    loop = DistributedLoop(model, placement, global_batch=4, accumulation=2)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    loop.fit(lambda batch: batches, tf.data.Dataset.from_tensor_slices((x, y)).batch(8),
             epochs=1, steps_per_epoch=2)
    assert int(model.optimizer.iterations.numpy()) == 1
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- mixed precision ----------------------------------------------------------------------------

def test_mixed_precision_keeps_the_model_s_inputs_outputs_and_features_in_their_dtypes(export):
    from trainer.data import eval_dataset
    from trainer.models import build_model
    from trainer.precision import FLOAT32, MIXED, compute_policy, dtype_policy

    config = load_config(overrides={**TINY, "train.mixed_precision": True})
    assert compute_policy(config, gpus=0) == FLOAT32
    assert compute_policy(config, gpus=1) == MIXED
    manifest = Manifest.read(export)
    with dtype_policy(MIXED):
        model = build_model(config, manifest)
    assert keras.config.dtype_policy().name == FLOAT32  # nothing built later inherits it
    assert {name: tensor.dtype for name, tensor in model.input.items()} == {
        schema.IMAGE: "float16", schema.FEATURES: "float32", schema.CONFIDENCES: "float32"}
    assert model.get_layer("stage0_sep0_conv").compute_dtype == "float16"
    assert model.get_layer("image_dense").compute_dtype == "float16"
    for name in ("feature_scaler", "select_features", "impute_missing", "confidence_gate",
                 "feature_inputs"):
        assert model.get_layer(name).compute_dtype == "float32", name
    batch = next(iter(eval_dataset(export, manifest, "test", batch_size=6)))
    inputs = {k: batch[k] for k in (schema.IMAGE, schema.FEATURES, schema.CONFIDENCES)}
    inputs[schema.FEATURES] = inputs[schema.FEATURES] * 1e6  # float16 would overflow these
    probabilities = model(inputs, training=False)
    assert probabilities.dtype == "float32"
    assert np.isfinite(probabilities.numpy()).all()
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-3)


# -- mirrored, on two logical CPU devices -------------------------------------------------------

#: A fresh interpreter with two logical CPU devices: a mirrored run with gradient accumulation
#: and mixed precision (float16 arithmetic on the CPU: the placement is told there is a GPU);
#: then a run over a tiny memory budget.
MIRRORED = """
import dataclasses, json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import trainer.train as training
from skyshard.run_record import RunRecord
from trainer.callbacks import MemoryBudgetExceeded
from trainer.config import load_config
from trainer.model_io import load_model

export, run, small, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
real_place = training.place
training.place = lambda name, cluster=None, join_timeout=None: dataclasses.replace(
    real_place(name, cluster, join_timeout), gpus=1)
policies = set()

class Policies(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        policies.update(layer.dtype_policy.name for layer in self.model.layers)

record = training.train(export, run, load_config(overrides=overrides),
                        extra_callbacks=[Policies()], echo=print)
model = load_model(run)
try:
    training.train(export, small, load_config(overrides={**overrides,
                                                         "memory.ram_budget_gb": 0.05}))
    memory = None
except MemoryBudgetExceeded as exc:
    memory = str(exc)
print(json.dumps({
    "record": record.to_json(), "policies": sorted(policies),
    "saved_policies": sorted({layer.dtype_policy.name for layer in model.layers}),
    "synchronized": sorted({layer.synchronized for layer in model.layers
                            if hasattr(layer, "synchronized")}),
    "memory": memory, "memory_status": RunRecord.read(small).status}))
"""


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_accumulates_in_float16_and_stops_on_memory(export,
                                                                                 tmp_path):
    overrides = {**TINY, "train.strategy": "mirrored", "train.gradient_accumulation_steps": 2,
                 "train.mixed_precision": True, "train.tensorboard": False}
    out = json_from_fresh_process(MIRRORED, export, tmp_path / "run", tmp_path / "small",
                                  json.dumps(overrides), timeout=420)
    run = RunRecord.from_json(out["record"])
    assert run.status == "completed" and run.epochs_completed == 2
    placed = run.distribution
    assert (placed.strategy, placed.workers, placed.replicas) == ("mirrored", 1, 2)
    assert placed.mixed_precision and len(placed.devices) == 2
    assert set(run.history) == {"loss", "accuracy", "f1_macro", "val_loss", "val_accuracy",
                                "val_f1_macro", "learning_rate"}
    assert all(len(values) == 2 for values in run.history.values())
    assert np.isfinite(run.history["loss"]).all() and np.isfinite(run.history["val_loss"]).all()
    # trained in float16 with float32 weights; the saved model is float32, its batch
    # normalisation plain (the replicas' statistics were pooled only while training)
    assert "mixed_float16" in out["policies"] and out["saved_policies"] == ["float32"]
    assert out["synchronized"] == [False]
    assert out["memory"].startswith("memory budget exceeded: the trainer's RSS reached")
    assert out["memory_status"] == "memory_exceeded"
