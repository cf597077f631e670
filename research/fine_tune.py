"""Fine-tuning on a camera the sample does not model: from scratch against from a trained run.

A user with a camera of their own labels a few frames per class. Is it better to train on them
from scratch (``skyshard train EXPORT RUN``) or to fine-tune the shipped model (``skyshard train
EXPORT RUN --init builtin``)? This measures it on :data:`UNSEEN_CAMERA`, a camera the sample's
fleet does not hold, so neither the shipped model nor a sample-trained run has seen its frames:

1. frames of that camera through the sample's own generator (:func:`sample.make_frame` with the
   camera forced; everything else drawn as for any sample frame): a pool of the largest shot
   count per class (random stream :data:`SHOT_STREAM`) and a disjoint held-out set
   (``--test-per-class``, stream :data:`HELD_OUT_STREAM`; no file of it is in the pool, checked
   by sha256);
2. the held-out frames exported once, every frame in one split, with the initial run's image
   size, preprocessing and classes;
3. per shot count N: the first N pool frames of each class (so the 5 are among the 20, the 20
   among the 50) exported alike, split between train and val only (``val_fraction``
   :data:`SHOT_VAL_FRACTION`, no test split: every labelled frame is used), with the first split
   seed from ``--seed`` up that leaves every class a train frame and the set a val frame;
4. per shot count: ``skyshard train`` twice on that export, from scratch (the default recipe)
   and ``--init RUN``, both with ``--seed`` and the same ``--set`` overrides, each in its own
   process (so its ``run.json`` has its own seconds and peak RSS); every run from scratch
   first. Exports and runs already finished in ``--work`` with the same settings are reused
   (others are refused), so an interrupted measurement continues;
5. each run, and the initial run as it is (0 shots), evaluated on the held-out export: accuracy
   and macro-F1 of the model, and with trusted headers and rules as ``skyshard score`` answers.

The JSON has the camera and why it is unseen, the initial run, per shot count the split, both
runs' figures, training seconds and peak RSS, the library versions and the command line.
Run from the repository root::

    python -m research.fine_tune --init builtin --work /tmp/fine-tune \\
        --out bench/results/fine-tune-unseen-camera.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from sample.cameras import CAMERAS, Camera
from skyshard.files import sha256_file, write_json_atomic

#: An industrial global-shutter colour camera of the kind used for lunar, solar and planetary
#: video and for spectroscopy (a Sony IMX174-class sensor read in its 10-bit mode, uncooled).
#: Unseen: no camera of the sample's catalogue (:data:`sample.cameras.CAMERAS`) has its sensor
#: format, its pixel pitch, its 10-bit converter or its BGGR mosaic (see :func:`unseen_by`);
#: nor does any have a fixed pedestal plus offset on a CMOS sensor, or this gain range. Its
#: fixed-pattern defects (hot pixels, column offsets) are seeded by its name, so they are its own.
UNSEEN_CAMERA = Camera(
    name="GS3-174C industrial (unseen)", kind="cmos", sensor=(1200, 1920), adc_bits=10,
    scaled_to_16bit=True, bayer="BGGR", cooled=False, pixel_um=5.86, full_well_e=32000,
    gain_e_per_adu=(31.3, 1.1), read_noise_e=(6.5, 3.2), gain_setting=(0, 480),
    offset_setting=(0, 100), pedestal_adu=16.0, pedestal_per_offset=1.0, dark_e_s_0c=0.8,
    hot_fraction=5e-4, amp_glow_e_s=0.0, column_noise_e=1.2, row_noise_e=1.6,
    eight_bit_mode=True, min_exposure_s=1e-5)

#: The properties :func:`unseen_by` compares with the catalogue.
UNSEEN_PROPERTIES = ("sensor", "pixel_um", "adc_bits", "bayer", "gain_e_per_adu",
                     "read_noise_e")

#: Random streams of :func:`sample.frame_rng` (the sample tree uses 0, its "new night" 1).
SHOT_STREAM = 2
HELD_OUT_STREAM = 3

DEFAULT_SHOTS = (5, 20, 50)
DEFAULT_TEST_PER_CLASS = 30
DEFAULT_SEED = 11

#: Share of the labelled shots kept for validation (best epoch, calibration); no test split.
SHOT_VAL_FRACTION = 0.2

#: Split seeds tried from ``--seed`` up for a usable train/val split of the shots.
SPLIT_SEED_TRIES = 1000


class FineTuneError(ValueError):
    """An unusable setting: unknown classes, no usable split, overlapping frames."""


def unseen_by(camera: Camera) -> list[str]:
    """The properties of :data:`UNSEEN_PROPERTIES` in which ``camera`` differs from every
    camera of the catalogue (``sample.cameras.CAMERAS``), e.g. ``["sensor", "bayer"]``."""
    return [name for name in UNSEEN_PROPERTIES
            if all(getattr(camera, name) != getattr(known, name) for known in CAMERAS.values())]


def write_frames(out: Path, camera: Camera, classes: Sequence[str], per_class: int, seed: int,
                 stream: int) -> dict[str, list[Path]]:
    """Render ``per_class`` frames of each class with ``camera`` into ``out/<class>/``.

    Frame ``i`` of a class is the sample's frame ``i`` of random stream ``stream`` (see
    :func:`sample.frame_rng`) with the camera forced, so a larger ``per_class`` only adds
    frames. Files already there are kept (an interrupted run continues).

    Returns
    -------
    dict
        Class name -> the paths, in frame order.
    """
    from sample.frames import frame_rng, make_frame, plan_frame
    from sample.tree import unique_name
    from sample.writers import frame_bytes
    from skyshard.files import write_bytes_atomic

    written: dict[str, list[Path]] = {}
    for class_name in classes:
        folder = out / class_name
        folder.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        paths = written.setdefault(class_name, [])
        for index in range(per_class):
            # Planning is cheap: it names the file; pixels only for a file not yet written.
            plan = plan_frame(class_name, index, frame_rng(seed, class_name, index, stream),
                              camera=camera)
            path = folder / unique_name(plan.file_name, taken)
            if not path.is_file():
                frame = make_frame(class_name, frame_rng(seed, class_name, index, stream), index,
                                   camera=camera)
                write_bytes_atomic(path, frame_bytes(frame.data, plan.header, plan.fmt,
                                                     plan.software, dither_seed=1 + index % 9999))
            paths.append(path)
    return written


def link_tree(pool: dict[str, list[Path]], out: Path, count: int) -> dict[str, list[Path]]:
    """``out/<class>/``: hard links (copies where links fail) to the first ``count`` frames of
    each class of ``pool``."""
    linked: dict[str, list[Path]] = {}
    for class_name, paths in pool.items():
        folder = out / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for path in paths[:count]:
            target = folder / path.name
            if not target.exists():
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
            linked.setdefault(class_name, []).append(target)
    return linked


def split_counts(files: dict[str, list[Path]], seed: int, val_fraction: float,
                 test_fraction: float = 0.0) -> dict[str, dict[str, int]]:
    """Frames per split and class the exporter will give ``files`` with this split seed (the
    split is a function of each file's sha256: :func:`exporter.split.assign_split`)."""
    from exporter.split import assign_split

    counts: dict[str, dict[str, int]] = {"train": {}, "val": {}, "test": {}}
    for class_name, paths in files.items():
        for split in counts:
            counts[split][class_name] = 0
        for path in paths:
            split = assign_split(sha256_file(path), seed, val_fraction, test_fraction)
            counts[split][class_name] += 1
    return counts


def choose_split_seed(files: dict[str, list[Path]], first: int,
                      val_fraction: float = SHOT_VAL_FRACTION) -> tuple[int, dict]:
    """The first split seed from ``first`` up that leaves every class at least one train frame
    and the whole set at least one val frame; with its counts per split and class."""
    hashes = {c: [sha256_file(p) for p in paths] for c, paths in files.items()}
    from exporter.split import assign_split

    for seed in range(first, first + SPLIT_SEED_TRIES):
        splits = {c: [assign_split(h, seed, val_fraction, 0.0) for h in hs]
                  for c, hs in hashes.items()}
        if all("train" in s for s in splits.values()) and any(
                "val" in s for s in splits.values()):
            return seed, {split: {c: s.count(split) for c, s in splits.items()}
                          for split in ("train", "val")}
    raise FineTuneError(f"no split seed in {first}..{first + SPLIT_SEED_TRIES - 1} gives every "
                        "class a train frame and the set a val frame; label more frames")


def export_tree(tree: Path, out: Path, spec, command: str):
    """Export ``tree`` into ``out`` with ``spec`` (classes in ``spec.classes``' order); an
    export already finished there with the same spec is reused (another one is refused).
    Returns its :class:`~skyshard.manifest.Manifest`."""
    from exporter.export import run_export
    from exporter.spec import ExportSpec
    from skyshard.manifest import Manifest

    if (out / "manifest.json").is_file():
        manifest = Manifest.read(out)
        made = ExportSpec.from_manifest(manifest, labelled=True).to_dict()
        wanted = spec.to_dict()
        differ = [key for key in ("classes", "image_size", "preprocessing", "seed",
                                  "val_fraction", "test_fraction", "file_names")
                  if made[key] != wanted[key]]
        if differ:
            raise FineTuneError(f"{out} holds an export made with another {', '.join(differ)}; "
                                "choose another --work")
        return manifest
    return run_export(tree, out, spec=spec, classes=list(spec.classes), overwrite=True,
                      command=command).manifest


def train_command(export: Path, run: Path, seed: int, init: str | None,
                  assignments: Sequence[str]) -> list[str]:
    """The ``skyshard train`` command line of one run."""
    command = ["skyshard", "train", str(export), str(run), "--seed", str(seed)]
    if init is not None:
        command += ["--init", init]
    for text in assignments:
        command += ["--set", text]
    return command


def train_run(command: list[str], run: Path) -> dict[str, Any]:
    """Run ``command`` (a :func:`train_command`) in its own process, unless ``run`` already
    holds a finished model; returns the run's seconds, peak RSS, best epoch and what it started
    from (``run.json``'s ``model.init``)."""
    from skyshard.run_record import MODEL_FILE, RunRecord

    if not (run / MODEL_FILE).is_file():
        shutil.rmtree(run, ignore_errors=True)  # an interrupted run: start over
        subprocess.run([sys.executable, "-m", "cli", *command[1:]], check=True)
    record = RunRecord.read(run)
    if not str(record.command).endswith(" ".join(command[1:])):
        raise FineTuneError(f"{run} holds a run of another command ({record.command}); "
                            "choose another --work")
    started_from = record.model.init if record.model is not None else None
    return {"command": shlex.join(command), "status": record.status,
            "started_from": None if started_from is None else {
                "run": started_from["run"], "class_head": started_from["class_head"],
                "layers_copied": len(started_from["layers_copied"])},
            "train_seconds": round(float(record.seconds), 1),
            "peak_rss_mb": round(float(record.peak_rss_mb), 1),
            "epochs": record.epochs_completed, "best_epoch": record.best_epoch}


def held_out_figures(run: str | Path, export: Path, out: Path) -> dict[str, Any]:
    """Accuracy and macro-F1 of ``run`` on the held-out export (its one split, ``train``): the
    model's own answer, and with trusted headers and rules (what ``skyshard score`` answers)."""
    from evaluation.evaluate import evaluate

    shutil.rmtree(out, ignore_errors=True)
    metrics = evaluate(run, export, split="train", out_dir=out).metrics
    ruled = metrics["with_rules"]
    return {"n": metrics["n"], "accuracy": round(float(metrics["accuracy"]), 4),
            "macro_f1": round(float(metrics["macro_f1"]), 4),
            "with_headers_and_rules": {"accuracy": round(float(ruled["accuracy"]), 4),
                                       "macro_f1": round(float(ruled["macro_f1"]), 4)}}


def table(report: dict[str, Any]) -> str:
    """The results as a small Markdown table."""
    lines = ["| shots/class | train+val | from scratch: acc, F1 | from the run: acc, F1 | "
             "train s (scratch, init) | peak RSS MB (scratch, init) |",
             "|---|---|---|---|---|---|"]
    zero = report["zero_shot"]
    lines.append(f"| 0 | - | - | {zero['accuracy']:.3f}, {zero['macro_f1']:.3f} | - | - |")
    for row in report["results"]:
        s, i = row["scratch"], row["init"]
        lines.append(
            f"| {row['shots']} | {sum(row['split']['train'].values())}+"
            f"{sum(row['split']['val'].values())} | {s['accuracy']:.3f}, {s['macro_f1']:.3f} | "
            f"{i['accuracy']:.3f}, {i['macro_f1']:.3f} | {s['train_seconds']:.0f}, "
            f"{i['train_seconds']:.0f} | {s['peak_rss_mb']:.0f}, {i['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def measure(init: str, work: Path, shots: Sequence[int], test_per_class: int, seed: int,
            assignments: Sequence[str], command: str) -> dict[str, Any]:
    """Everything of the module docstring; returns the report (see :func:`main`)."""
    from exporter.spec import ExportSpec
    from sample.frames import CLASSES
    from skyshard.builtin import resolve_run
    from skyshard.memory import peak_rss_mb
    from skyshard.run_record import MODEL_FILE, RunRecord
    from skyshard.versions import library_versions

    started = time.monotonic()
    folder = resolve_run(init)
    record = RunRecord.read(folder)
    classes = list(record.export.classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise FineTuneError(f"--init {init!r} has classes the sample cannot draw: {unknown}")
    shots = sorted(set(int(n) for n in shots))
    if not shots or shots[0] < 1 or test_per_class < 1:
        raise FineTuneError(f"shots {shots} and --test-per-class {test_per_class} must be >= 1")
    base = ExportSpec.from_manifest(record.export, labelled=True)

    print(f"frames: {shots[-1]} per class to label, {test_per_class} held out, camera "
          f"{UNSEEN_CAMERA.name}", flush=True)
    pool = write_frames(work / "frames" / "pool", UNSEEN_CAMERA, classes, shots[-1], seed,
                        SHOT_STREAM)
    held = write_frames(work / "frames" / "held-out", UNSEEN_CAMERA, classes, test_per_class,
                        seed, HELD_OUT_STREAM)
    pool_hashes = {sha256_file(p) for paths in pool.values() for p in paths}
    held_hashes = {sha256_file(p) for paths in held.values() for p in paths}
    overlap = len(pool_hashes & held_hashes)
    if overlap:
        raise FineTuneError(f"{overlap} held-out frame(s) are also among the labelled ones")

    # The held-out frames: one export, every frame in the train split (nothing carved off).
    held_spec = dataclasses.replace(base, val_fraction=0.0, test_fraction=0.0, seed=seed)
    held_export = work / "exports" / "held-out"
    print("export: held-out frames", flush=True)
    held_manifest = export_tree(work / "frames" / "held-out", held_export, held_spec,
                                f"python -m research.fine_tune (held-out frames, like {init})")
    print(f"evaluate: {init} as it is on the held-out frames", flush=True)
    zero_shot = held_out_figures(folder, held_export, work / "evaluations" / "zero-shot")

    # Exports and runs from scratch first (they do not depend on the initial run), then the
    # runs from it.
    results = []
    for n in shots:
        tree = work / "frames" / f"shots-{n}"
        files = link_tree(pool, tree, n)
        split_seed, counts = choose_split_seed(files, seed)
        spec = dataclasses.replace(base, val_fraction=SHOT_VAL_FRACTION, test_fraction=0.0,
                                   seed=split_seed)
        export = work / "exports" / f"shots-{n}"
        print(f"export: {n} frames per class (split seed {split_seed})", flush=True)
        manifest = export_tree(tree, export, spec,
                               f"python -m research.fine_tune ({n} shots, like {init})")
        exported = {split: dict(manifest.splits[split].counts_per_class)
                    for split in ("train", "val")}
        if any(exported[s].get(c, 0) != counts[s][c] for s in counts for c in classes):
            raise FineTuneError(f"the export of {n} shots split them {exported}, not as "
                                f"foreseen {counts}")
        results.append({"shots": n, "split_seed": split_seed, "split": counts,
                        "dead_letters": manifest.errors.count, "export": export})
    for name, start in (("scratch", None), ("init", init)):
        for row in results:
            n = row["shots"]
            run = work / "runs" / f"shots-{n}-{name}"
            print(f"train: {n} shots, {'from scratch' if start is None else 'from ' + start}",
                  flush=True)
            figures = train_run(train_command(row["export"], run, seed, start, assignments),
                                run)
            figures.update(held_out_figures(run, held_export,
                                            work / "evaluations" / f"shots-{n}-{name}"))
            row[name] = figures
    for row in results:
        row["export"] = str(row["export"])
    return {
        "what": "fine-tuning on a camera the sample does not model: accuracy on its held-out "
                "frames, trained from scratch on N labelled frames per class or from a "
                "trained run",
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "camera": {**dataclasses.asdict(UNSEEN_CAMERA), "unseen_by": unseen_by(UNSEEN_CAMERA)},
        "init": {"run": init, "folder": str(folder), "model_sha256": sha256_file(
                     folder / MODEL_FILE), "skyshard_version": record.skyshard_version,
                 "image_size": record.export.image_size, "classes": classes,
                 "trained_by": record.command, "best_epoch": record.best_epoch,
                 "epochs": record.epochs_completed},
        "seed": seed, "config_overrides": list(assignments),
        "frames": {"labelled_pool_per_class": shots[-1], "held_out_per_class": test_per_class,
                   "streams": {"labelled": SHOT_STREAM, "held_out": HELD_OUT_STREAM},
                   "held_out_also_labelled": overlap},
        "held_out": {"export": str(held_export), "split": "train",
                     "records": held_manifest.splits["train"].count,
                     "dead_letters": held_manifest.errors.count},
        "shot_val_fraction": SHOT_VAL_FRACTION,
        "zero_shot": zero_shot,
        "results": results,
        "wall_seconds": round(time.monotonic() - started, 1),
        # this process: frames, exports and evaluations (each training reports its own)
        "peak_rss_mb": round(peak_rss_mb(include_children=False), 1),
        "versions": library_versions(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.fine_tune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", required=True, metavar="RUN",
                        help="the trained run to fine-tune: a run folder or `builtin`")
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch folder (kept: an interrupted measurement continues)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS),
                        metavar="N", help="labelled frames per class (default: 5 20 50)")
    parser.add_argument("--test-per-class", type=int, default=DEFAULT_TEST_PER_CLASS,
                        metavar="N", help="held-out frames per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="frames, split and training seed (default: %(default)s)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="a training config key for every run")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "research.fine_tune",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        report = measure(args.init, args.work, args.shots, args.test_per_class, args.seed,
                         args.assignments, command)
    except (FineTuneError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: exit status {exc.returncode} from {shlex.join(exc.cmd)}", file=sys.stderr)
        return exc.returncode
    write_json_atomic(args.out, report)
    print(table(report))
    print(f"wrote {args.out} ({report['wall_seconds']:.0f} s; peak RSS {report['peak_rss_mb']:.0f} "
          "MB, each training's in the table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
