"""``skyshard tune EXPORT STUDY [--trials N] [--epochs N] [--tune-config FILE.toml]
[--config FILE.toml] [--set KEY=VALUE ...] [--ram-budget-gb 18]``: Optuna over serial training
runs.

Import-light like ``cli.train``: TensorFlow and Optuna are imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

from cli.train import default_help, overrides_from_args
from trainer.config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export", metavar="EXPORT", help="export folder (holds manifest.json)")
    parser.add_argument("study", metavar="STUDY",
                        help="study folder: trial-NNN/ runs, study.journal, study.json; "
                             "an existing study continues")
    parser.add_argument("--trials", type=int, help="total trials of the study (default 20)")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="train.epochs of every trial (default: study.epochs of the tune "
                             "config, 10); --set train.epochs=N does the same")
    parser.add_argument("--tune-config", metavar="FILE.toml",
                        help="study settings and search space (defaults: trainer/tune.toml)")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="training configuration the trials start from")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="training config override (repeatable)")
    parser.add_argument("--ram-budget-gb", type=float, metavar="GB",
                        help=default_help("memory.ram_budget_gb",
                                          "RSS budget of the tuning process"))


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from skyshard.storage import refuse_urls

    refused = refuse_urls([("STUDY", args.study)], "a study keeps its trials and Optuna journal "
                          "in a local (or mounted) folder")
    if refused:
        print(f"skyshard tune: {refused}", file=sys.stderr)
        return 2
    try:
        from trainer.tune import load_tune_config

        overrides = overrides_from_args(args)
        train_config = load_config(args.config, overrides)
        tune_config = load_tune_config(args.tune_config, args.trials,
                                       epochs=overrides.get("train.epochs"))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"skyshard tune: {exc}", file=sys.stderr)
        return 2

    from skyshard.locks import FolderError
    from skyshard.manifest import ManifestError, ShardIntegrityError
    from trainer.tune import tune

    try:
        tune(args.export, args.study, train_config, tune_config,
             echo=lambda line: print(line, flush=True))
    except (ShardIntegrityError, ManifestError, ConfigError, FolderError) as exc:
        print(f"skyshard tune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skyshard tune: interrupted; run the same command again to continue the study "
              f"in {args.study}", file=sys.stderr)
        return 130
    return 0
