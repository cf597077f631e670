"""The export as an Apache Beam pipeline: frames -> records -> shards, scaler, dead letters.

Shape of the job (no barrier after the image-producing step, see docs/design.md)::

    file list ─ Reshuffle ─ Extract ─┬─ route ─ WriteShards ─────────── shard metadata (small)
                                     ├─ train features ─ FitScaler ──── scaler (small)
                                     ├─ (split, class) ─ Count ──────── counts (small)
                                     └─ dead letters ────────────────── errors (small)

The file list is found by the workers themselves (:mod:`exporter.matching`: the launcher lists
the class folders only). The Reshuffle sits on the file *list*, before any pixels exist, to
spread frames over workers. When the classes are the class folders that hold frames, the job
finds them (a small side input of Extract) before any frame is read.
Everything after Extract streams; only small metadata reaches the driver, which then renames the
shards and writes the manifest last (see :mod:`exporter.export`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback

import apache_beam as beam
from apache_beam.metrics import Metrics

from exporter.discovery import FrameRef
from exporter.extract import ExtractedFrame, extract
from exporter.spec import ExportSpec
from exporter.frame import FrameError
from exporter.isolation import HelperUnavailable
from exporter.matching import InputPlan, matched_frames
from exporter.scaler import ScalerCombineFn
from exporter.shards import WriteShardsDoFn, destination
from skyshard.names import shown_name

DEAD_LETTERS = "dead_letters"
log = logging.getLogger("skyshard.export")


def dead_letter(ref: FrameRef, stage: str, error: BaseException) -> dict:
    """One ``errors.jsonl`` line: which input, where it failed, and why (plus ``traceback`` for
    a bug reported from the reader's helper process). Names that are not UTF-8 are shown with
    ``\\xNN`` escapes (:func:`skyshard.names.shown_name`)."""
    letter = {"path": shown_name(ref.path), "key": shown_name(ref.key),
              "class": ref.class_name, "stage": stage,
              "error_type": getattr(error, "error_type", None) or type(error).__name__,
              "message": shown_name(str(error) or repr(error))}
    if getattr(error, "traceback", None):
        letter["traceback"] = error.traceback
    return letter


class ExtractDoFn(beam.DoFn):
    """FrameRef -> ExtractedFrame, or a dead letter on the ``dead_letters`` output.

    Any exception from one file becomes that file's dead letter: one bad frame never kills the
    job. Only a helper process that cannot start at all (a machine problem, not a file's) fails
    the bundle. Logs progress every ``log_every`` frames per worker.
    """

    def __init__(self, spec: ExportSpec, log_every: int = 100):
        self.spec = spec
        self.log_every = log_every
        self._specs: dict[tuple[str, ...], ExportSpec] = {}
        self.frames = Metrics.counter("skyshard", "frames_exported")
        self.failures = Metrics.counter("skyshard", "dead_letters")

    def setup(self):
        from skyshard.runtime import quiet_library_warnings

        quiet_library_warnings()  # a Beam worker process did not run the command's set-up
        self._done = 0
        self._started = time.monotonic()

    def spec_for(self, classes: list[str] | None) -> ExportSpec:
        """The spec, with ``classes`` when the job found them (a side input)."""
        if classes is None:
            return self.spec
        key = tuple(classes)
        if key not in self._specs:
            self._specs[key] = dataclasses.replace(self.spec, classes=list(classes))
        return self._specs[key]

    def process(self, ref: FrameRef, classes: list[str] | None = None):
        try:
            record = extract(ref, self.spec_for(classes))
        except HelperUnavailable:
            raise
        except FrameError as exc:
            self.failures.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(ref, exc.stage, exc))
        except Exception as exc:  # noqa: BLE001 - the dead-letter contract: never crash the job
            self.failures.inc()
            letter = dead_letter(ref, "unexpected", exc)
            letter["traceback"] = traceback.format_exc(limit=4)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        else:
            self.frames.inc()
            yield record
        self._done += 1
        if self._done % self.log_every == 0:
            rate = self._done / max(time.monotonic() - self._started, 1e-9)
            log.info("worker: %d frames processed (%.1f frames/s)", self._done, rate)


def route(record: ExtractedFrame) -> tuple[str, bytes]:
    return destination(record.split, record.class_name), record.example


def is_fit_split(record: ExtractedFrame, fit_split: str) -> bool:
    return record.split == fit_split


def features_of(record: ExtractedFrame):
    return record.features


def split_and_class(record: ExtractedFrame) -> tuple[str, str]:
    return record.split, record.class_name or ""


def count_line(element) -> str:
    (split, class_name), count = element
    return json.dumps({"split": split, "class": class_name, "count": count})


def found_key(ref: FrameRef) -> tuple[str, str]:
    return "class", ref.class_name or ""


def other_key(extension: str) -> tuple[str, str]:
    return "extension", extension


def found_line(element) -> str:
    """A ``found`` row: frames found per class, or other files per extension."""
    (kind, name), count = element
    if kind == "class":
        return json.dumps({"class": name, "frames": count})
    return json.dumps({"extension": name, "count": count})


def class_name_of(element) -> list[str]:
    (kind, name), _ = element
    return [name] if kind == "class" else []


def build_export(pipeline: beam.Pipeline, plan: InputPlan, spec: ExportSpec,
                 out_dir: str, meta_dir: str, target_bytes: int, compress: bool,
                 n_features: int, fit_split: str, classes_found: bool = False) -> None:
    """Add the export transforms to ``pipeline``; outputs land under ``meta_dir`` and the
    temporary shard folder. ``fit_split`` is the split the scaler is fitted on.

    The workers find the frames of ``plan`` (:func:`exporter.matching.matched_frames`); how
    many they found per class and how many other files they saw land under ``meta_dir`` too
    (``found``: rows with ``class`` and ``frames``, rows with ``extension`` and ``count``).
    ``classes_found``: the export's classes are the class folders the job finds frames in
    (sorted), not ``spec.classes``; a labelled export's labels wait for that list.
    """
    def write_lines(pcoll, name):
        # No file for an empty output: an empty object cannot be uploaded in parts to S3.
        return pcoll | f"Save{name.title()}Metadata" >> beam.io.WriteToText(
            f"{meta_dir}/{name}", file_name_suffix=".jsonl", skip_if_empty=True)

    frames, discover_letters, others = matched_frames(
        pipeline, plan, spec.classes if spec.labelled and not classes_found else None)
    counted = ((frames | "FoundClass" >> beam.Map(found_key),
                others | "OtherExtension" >> beam.Map(other_key))
               | "FoundAndOther" >> beam.Flatten()
               | "CountFound" >> beam.combiners.Count.PerElement())
    write_lines(counted | "FoundJson" >> beam.Map(found_line), "found")
    side = {}
    if classes_found:
        side["classes"] = beam.pvalue.AsSingleton(
            counted
            | "ClassNames" >> beam.FlatMap(class_name_of)
            | "ClassList" >> beam.combiners.ToList()
            | "SortClasses" >> beam.Map(sorted))
    extracted = (
        frames
        | "SpreadOverWorkers" >> beam.Reshuffle()
        | "Extract" >> beam.ParDo(ExtractDoFn(spec), **side).with_outputs(
            DEAD_LETTERS, main="records")
    )
    records = extracted.records

    shards = (records
              | "Route" >> beam.Map(route)
              | "WriteShards" >> beam.ParDo(WriteShardsDoFn(out_dir, target_bytes, compress)))
    write_lines(shards | "ShardJson" >> beam.Map(json.dumps), "shards")

    scaler = (records
              | "FitSplitOnly" >> beam.Filter(is_fit_split, fit_split)
              | "Features" >> beam.Map(features_of)
              | "FitScaler" >> beam.CombineGlobally(ScalerCombineFn(n_features)))
    write_lines(scaler | "ScalerJson" >> beam.Map(json.dumps), "scaler")

    counts = (records
              | "SplitClass" >> beam.Map(split_and_class)
              | "Count" >> beam.combiners.Count.PerElement())
    write_lines(counts | "CountJson" >> beam.Map(count_line), "counts")

    letters = (extracted[DEAD_LETTERS], discover_letters) | "AllDeadLetters" >> beam.Flatten()
    write_lines(letters | "ErrorJson" >> beam.Map(json.dumps, sort_keys=True), "errors")
