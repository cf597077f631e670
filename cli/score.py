"""``skyshard score RUN INPUT --out DIR [options] [Beam pipeline options]`` (import-light: no
TensorFlow or Beam until ``run``)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  skyshard score run/ /data/2026-11-28/ --out scored/
  skyshard score run/ night-export/ --out scored/
  skyshard score run/ /data/2026-11-28/ --out scored/ --sort-into sorted/ --mode link
  skyshard score run/ /data/2026-11-28/ --out scored/ --beam --direct_num_workers=2 \\
      --direct_running_mode=multi_processing

INPUT is a folder of FITS/TIFF frames (read and preprocessed as the run's export was), one such
frame file, or an export made with `skyshard export --unlabeled --like MANIFEST`. With --beam, any option not
listed above is an Apache Beam pipeline option, passed on untouched (Beam's local FnApiRunner
unless --runner is given).

exit status: 0 scored (also a night without frames: a warning says so), 1 scored but some
frames could not be sorted into --sort-into (the first reason is printed, all in score.json),
2 nothing done (bad arguments, a mismatched or damaged input, an unusable --out).
"""

#: Exit status when predictions were written but ``--sort-into`` could not place every frame.
SORT_FAILED = 1


def probability(text: str) -> float:
    """An argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("run", metavar="RUN", help="training run folder (model.keras, run.json), "
                        "local or a URL")
    parser.add_argument("input", metavar="INPUT", help="folder of frames, one frame file, or an export folder")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="output folder, local or a URL: predictions.csv, errors.jsonl, "
                             "rules.toml, sorted.csv, score.json (nothing else)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="frames per prediction batch (default 64)")
    parser.add_argument("--low-confidence", type=probability, default=None, metavar="P",
                        help="flag predictions whose calibrated probability is below P "
                             "(default: the run's threshold, chosen on validation; 0.5 for "
                             "runs trained without calibration)")
    parser.add_argument("--no-header-trust", action="store_true",
                        help="ignore what trusted headers state (bias, dark, flat, arc cards "
                             "consistent with the exposure): the model's and the rules' answer "
                             "only")
    parser.add_argument("--header-map", metavar="TYPE=CLASS,...",
                        help="header frame type -> class for trusted headers (types: bias, "
                             "dark, flat, arc); default: matched by class name")
    parser.add_argument("--rules", metavar="FILE",
                        help="post-processing rules (TOML); default: the shipped rules")
    parser.add_argument("--no-rules", action="store_true", help="the model's answer only")
    parser.add_argument("--sort-into", metavar="FOLDER",
                        help="also file each frame under FOLDER/<predicted class>/, flagged "
                             "ones (low confidence, unfamiliar) under FOLDER/_review/<predicted "
                             "class>/ (originals are never moved or changed; nothing is "
                             "overwritten); where each went: DIR/sorted.csv")
    parser.add_argument("--mode", choices=("link", "hardlink", "copy"), default="link",
                        help="--sort-into: symbolic link (default), hard link, or copy")
    parser.add_argument("--beam", action="store_true",
                        help="run the scoring as an Apache Beam job (Beam's local FnApiRunner "
                             "unless --runner is given)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished scoring in DIR, or write beside files score "
                             "did not write there (files of its own names are replaced)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from evaluation.baseline import parse_mapping
    from evaluation.model import RunError
    from evaluation.rules import RulesError
    from evaluation.score import SUMMARY_FILE, ScoreError, score, summary_lines
    from evaluation.sort_into import SortError
    from skyshard import storage
    from skyshard.manifest import ManifestError, ShardIntegrityError
    from skyshard.tfrecord import TFRecordCorruptError

    if extra and not args.beam:
        print(f"skyshard score: error: unrecognized arguments: {' '.join(extra)} (Beam options "
              "need --beam)", file=sys.stderr)
        return 2
    try:
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        result = score(args.run, args.input, args.out, batch_size=args.batch_size,
                       low_confidence=args.low_confidence, rules_path=args.rules,
                       use_rules=not args.no_rules, sort_into=args.sort_into, mode=args.mode,
                       beam=args.beam, beam_args=extra, overwrite=args.overwrite,
                       header_trust=not args.no_header_trust,
                       header_mapping=parse_mapping(args.header_map or ""))
    except (ManifestError, ShardIntegrityError, TFRecordCorruptError, RunError, RulesError,
            ScoreError, SortError, FileNotFoundError, ValueError) as exc:
        print(f"skyshard score: error: {exc}", file=sys.stderr)
        return 2
    for warning in result.summary.get("warnings", []):
        print(f"skyshard score: warning: {warning}", file=sys.stderr)
    print("\n".join(summary_lines(result)))
    failures = result.sort_failures
    if failures:
        first = failures[0]
        print(f"skyshard score: error: {len(failures)} frame(s) could not be sorted into "
              f"{args.sort_into}; first: {first['path']}: {first['error']} (all in "
              f"{storage.join(str(result.out_dir), SUMMARY_FILE)})", file=sys.stderr)
        return SORT_FAILED
    return 0
