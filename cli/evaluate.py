"""``skyshard evaluate RUN EXPORT [--split test] [--out DIR]`` (import-light: no TensorFlow
until ``run``)."""

from __future__ import annotations

import argparse
import sys

from cli.score import probability

EPILOG = """\
examples:
  skyshard evaluate run/ export/
  skyshard evaluate run/ export/ --split val --out run/eval-val
  skyshard evaluate run/ export/ --rules my-rules.toml --worst 48
  skyshard evaluate run/ export/ --baseline-map light=galaxies,arc=spectra

Writes DIR/metrics.json, confusion_matrix.png, reliability.png, misclassified.csv, rules.toml
and a self-contained report.html (default DIR: RUN/evaluation/SPLIT); nothing else, and never
over a file it did not write unless --overwrite.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("run", metavar="RUN", help="training run folder (model.keras, run.json), "
                        "local or a URL")
    parser.add_argument("export", metavar="EXPORT",
                        help="labelled export folder made like the run's (manifest.json)")
    parser.add_argument("--split", default="test",
                        help="split to evaluate, or 'all' for every split of the export (an "
                             "evaluation set exported with --test-fraction 1 has them all in "
                             "test) (default: test)")
    parser.add_argument("--out", metavar="DIR", help="output folder, local or a URL (default "
                        "RUN/evaluation/SPLIT)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="frames per prediction batch (memory grows with it, not with the "
                             "split; default 64)")
    parser.add_argument("--rules", metavar="FILE",
                        help="post-processing rules (TOML, [[rule]] tables); default: the "
                             "shipped rules")
    parser.add_argument("--no-rules", action="store_true",
                        help="report the model alone, without post-processing rules")
    parser.add_argument("--worst", type=int, default=24, metavar="N",
                        help="thumbnails of the N most confident mistakes in the report")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished evaluation in DIR, or write beside files "
                             "evaluate did not write there (files of its own names are replaced)")
    parser.add_argument("--baseline-map", "--header-map", metavar="TYPE=CLASS,...",
                        help="header frame type -> class for the header-only baseline and for "
                             "trusted headers (types: bias, dark, flat, arc, light, planetary); "
                             "default: matched by class name")
    parser.add_argument("--no-header-trust", action="store_true",
                        help="ignore what trusted headers state: report the model's and the "
                             "rules' answers only")
    parser.add_argument("--low-confidence", type=probability, default=None, metavar="P",
                        help="flag answers whose calibrated probability is below P (default: "
                             "the run's threshold, chosen on validation; 0.5 without one)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from evaluation.baseline import parse_mapping
    from evaluation.evaluate import EvaluationError, evaluate, summary_lines
    from evaluation.model import RunError
    from evaluation.rules import RulesError
    from skyshard.manifest import ManifestError, ShardIntegrityError
    from skyshard.tfrecord import TFRecordCorruptError

    try:
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        result = evaluate(args.run, args.export, split=args.split, out_dir=args.out,
                          batch_size=args.batch_size, rules_path=args.rules,
                          use_rules=not args.no_rules, worst_n=args.worst,
                          baseline_mapping=parse_mapping(args.baseline_map or ""),
                          header_trust=not args.no_header_trust,
                          low_confidence=args.low_confidence, overwrite=args.overwrite)
    except (ManifestError, ShardIntegrityError, TFRecordCorruptError, RunError, RulesError,
            EvaluationError, FileNotFoundError, ValueError) as exc:
        print(f"skyshard evaluate: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    return 0
