"""Scoring as an Apache Beam job: the scale-out path of ``skyshard score --beam``.

Shape of the job (the Reshuffle sits on the small list of inputs, before any pixels exist)::

    frames found | shard paths ─ Reshuffle ─ Read (by path) ─┬─ RunInference ─ Decide ─ rows
                                                             └─ dead letters

A local folder's frames are found by the workers, as an export's are
(:func:`exporter.matching.matched_frames`: the launcher lists the folders directly under it); one
frame file, or a folder on object storage, is listed by the launcher.

``RunInference`` runs a :class:`KeyedModelHandler` around :class:`KerasModelHandler`, a small
handler for the run's ``.keras`` model with its calibration and distance statistics (Beam's
TensorFlow handlers need tensorflow-hub). Every per-frame step is the function the local path
uses (:mod:`evaluation.batches`, :meth:`evaluation.model.RunModel.predict`,
:meth:`evaluation.decision.Policy.decide`), so both paths give the same predictions and flags. Beam options pass through untouched; without ``--runner`` the job runs on
Beam's local runner (:func:`exporter.runner.beam_pipeline`).
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler, PredictionResult,
                                           RunInference)

from evaluation.batches import frame_dead_letter, read_frame_record, shard_records
from evaluation.decision import Policy
from evaluation.model import RunInfo, load_run_model, read_run_info
from evaluation.predictions import Prediction, predictions_of
from skyshard import schema, storage
from skyshard.names import key_bytes, key_text
from exporter.matching import matched_frames
from exporter.runner import beam_pipeline

DEAD_LETTERS = "dead_letters"
log = logging.getLogger("skyshard.score")
MODEL_INPUTS = (schema.IMAGE, schema.FEATURES, schema.CONFIDENCES)


class KerasModelHandler(ModelHandler[dict, PredictionResult, Any]):
    """RunInference handler for a skyshard run: loads ``RUN/model.keras`` (``safe_mode=True``)
    with the run's calibration and ``ood.npz`` (:func:`evaluation.model.load_run_model`) and
    predicts batches of record dicts (``image``, ``features``, ``confidences``).

    Each :class:`PredictionResult` carries the record without its image (the decision needs
    the features) and ``(calibrated probabilities, out-of-distribution score)``.
    """

    def __init__(self, run_dir: str, n_classes: int, batch_size: int = 64):
        super().__init__()
        self._run_dir = str(run_dir)
        self._n_classes = int(n_classes)
        self._batch_size = int(batch_size)

    def load_model(self):
        return load_run_model(read_run_info(self._run_dir))

    def run_inference(self, batch: Sequence[dict], model,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        inputs = {name: np.stack([record[name] for record in batch]) for name in MODEL_INPUTS}
        probs, _, ood_score = model.predict(inputs, pad_to=self._batch_size)
        return [PredictionResult({k: v for k, v in record.items() if k != schema.IMAGE},
                                 (p, float(s)))
                for record, p, s in zip(batch, probs, ood_score)]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(record[name].nbytes for record in batch for name in MODEL_INPUTS)

    def get_metrics_namespace(self) -> str:
        return "skyshard_score"


class ReadFrameDoFn(beam.DoFn):
    """FrameRef -> ``(path, record)``, or its dead letter on the ``dead_letters`` output."""

    def __init__(self, spec):
        self.spec = spec

    def setup(self):
        from skyshard.runtime import quiet_library_warnings

        quiet_library_warnings()  # a Beam worker process did not run the command's set-up

    def process(self, ref):
        try:
            record = read_frame_record(ref, self.spec)
        except Exception as exc:  # noqa: BLE001 - the dead-letter contract: never crash the job
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, frame_dead_letter(ref, exc))
            return
        yield on_the_wire(record)


def on_the_wire(record: dict) -> tuple[bytes, dict]:
    """``(path, record)`` with the path and key as bytes: a file name need not be UTF-8, and
    Beam's coders encode text as UTF-8 (:mod:`skyshard.names`)."""
    wired = {**record, "path": key_bytes(record["path"]), "key": key_bytes(record["key"])}
    return wired["path"] or wired["key"], wired


def keyed_shard_records(shard: str, manifest: dict) -> Iterator[tuple[bytes, dict]]:
    """``(path, record)`` for every record of one shard file (CRC-checked)."""
    for record in shard_records(shard, manifest):
        yield on_the_wire(record)


def to_row(element: tuple[bytes, PredictionResult], policy: Policy) -> str:
    """One JSON line per frame: its :class:`Prediction` (:meth:`Prediction.to_row`); the path
    and key come as bytes (:func:`on_the_wire`) and go back to names as Python has them."""
    path, result = element
    path = key_text(path)
    record = {**result.example, "key": key_text(result.example["key"])}
    probs, ood_score = result.inference
    prediction, = predictions_of(
        [path], [record["key"]], np.asarray(probs, dtype=np.float32)[None, :],
        np.array([ood_score], dtype=np.float64), record[schema.FEATURES][None, :],
        record[schema.CONFIDENCES][None, :], policy)
    return json.dumps(prediction.to_row())


def build_scoring(pipeline: beam.Pipeline, source, run_dir: str, n_classes: int,
                  policy: Policy, batch_size: int, tmp_dir: str) -> None:
    """Add the scoring transforms; rows and dead letters land as JSON lines under tmp_dir."""
    if source.kind == "export":
        shards = [path for split in source.manifest.splits
                  for path in source.manifest.shard_paths(source.root, split)]
        keyed = (pipeline
                 | "ListShards" >> beam.Create(shards, reshuffle=False)
                 | "SpreadOverWorkers" >> beam.Reshuffle()
                 | "ReadShards" >> beam.FlatMap(keyed_shard_records, source.manifest))
        letters = None
    else:
        walked = None
        if source.plan is not None:  # a local folder: the workers walk it
            refs, walked, others = matched_frames(pipeline, source.plan, None)
            for name, pcoll in (("found", refs), ("other", others)):
                (pcoll
                 | f"Count{name.title()}" >> beam.combiners.Count.Globally()
                 | f"Write{name.title()}" >> beam.io.WriteToText(f"{tmp_dir}/{name}",
                                                                 file_name_suffix=".txt"))
        else:
            refs = pipeline | "ListFrames" >> beam.Create(source.refs, reshuffle=False)
        read = (refs
                | "SpreadOverWorkers" >> beam.Reshuffle()
                | "ReadFrames" >> beam.ParDo(ReadFrameDoFn(source.spec)).with_outputs(
                    DEAD_LETTERS, main="records"))
        keyed, letters = read.records, read[DEAD_LETTERS]
        if walked is not None:
            letters = (letters, walked) | "AllDeadLetters" >> beam.Flatten()
    handler = KeyedModelHandler(KerasModelHandler(run_dir, n_classes, batch_size))
    rows = (keyed
            | "Predict" >> RunInference(handler)
            | "Decide" >> beam.Map(to_row, policy))
    rows | "WritePredictions" >> beam.io.WriteToText(f"{tmp_dir}/predictions",
                                                     file_name_suffix=".jsonl")
    if letters is not None:
        (letters
         | "ErrorJson" >> beam.Map(json.dumps, sort_keys=True)
         | "WriteErrors" >> beam.io.WriteToText(f"{tmp_dir}/errors", file_name_suffix=".jsonl"))


def _read_lines(pattern: str) -> Iterator[dict]:
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    yield json.loads(line)


def score_with_beam(source, run_dir: Path | str, info: RunInfo, policy: Policy,
                    batch_size: int, beam_args: list[str], out_dir: Path):
    """Run the job and read its small outputs back: ``(predictions, dead_letters)``.
    ``run_dir``: where the workers find the run (a URL: each worker fetches its own copy)."""
    tmp_dir = out_dir / f".beam-{uuid.uuid4().hex[:8]}"
    where = run_dir if storage.is_url(run_dir) else str(Path(run_dir).resolve())
    try:
        pipeline, _ = beam_pipeline(beam_args)
        build_scoring(pipeline, source, where, len(info.classes), policy,
                      batch_size, str(tmp_dir))
        pipeline.run().wait_until_finish()
        predictions = [Prediction.from_row(row)
                       for row in _read_lines(f"{tmp_dir}/predictions*.jsonl")]
        letters = list(_read_lines(f"{tmp_dir}/errors*.jsonl"))
        if source.kind == "folder" and source.plan is not None:
            source.found = sum(_read_lines(f"{tmp_dir}/found*.txt"))
            source.other_files = sum(_read_lines(f"{tmp_dir}/other*.txt"))
            source.refused = sum(letter["stage"] == "discover" for letter in letters)
            log.info("input is a folder: the job found %d frame file(s) under %s (%d rejected "
                     "before reading)", source.found, source.root, source.refused)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return predictions, letters
