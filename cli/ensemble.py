"""``skyshard ensemble RUN RUN [RUN ...] --out ENS [--any-export]``: average trained runs.

Import-light: TensorFlow is imported inside :func:`run`, so ``skyshard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  for k in 0 1 2 3 4; do skyshard train export/ runs/fold$k --fold $k; done
  skyshard ensemble runs/fold0 runs/fold1 runs/fold2 runs/fold3 runs/fold4 --out runs/kfold
  skyshard evaluate runs/kfold export/
  skyshard score runs/kfold /data/2026-11-28/ --out scored/

  skyshard ensemble runs/seed1 runs/seed2 runs/seed3 --out runs/seeds

ENS is a run folder like any other: model.keras (the members nested, their softmax
probabilities averaged; loads with safe_mode=True) and run.json (the shared export block, the
member runs, versions, the command). Members must come from the same export (same manifest
sha256) and share classes, image size, features and preprocessing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="finished training run folders (two or more)")
    parser.add_argument("--out", required=True, metavar="ENS",
                        help="ensemble run folder to create (new or empty)")
    parser.add_argument("--any-export", action="store_true",
                        help="allow members trained on different exports made alike "
                             "(`skyshard export --like`): same classes, image size, features "
                             "and preprocessing, different manifest")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from skyshard.storage import refuse_urls

    refused = refuse_urls([*(("RUN", run) for run in args.runs), ("--out", args.out)],
                          "an ensemble reads and writes local (or mounted) run folders")
    if refused:
        print(f"skyshard ensemble: {refused}", file=sys.stderr)
        return 2
    from skyshard.locks import FolderError
    from trainer.ensemble import EnsembleError, build_ensemble

    try:
        build_ensemble(args.runs, args.out, any_export=args.any_export,
                       echo=lambda line: print(line, flush=True))
    except (EnsembleError, FileNotFoundError, FolderError) as exc:
        print(f"skyshard ensemble: {exc}", file=sys.stderr)
        return 2
    return 0
