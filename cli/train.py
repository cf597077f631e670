"""``skyshard train EXPORT RUN [--config FILE.toml] [overrides] [--resume] [--strategy S]``

Import-light: TensorFlow is imported inside :func:`run`, so ``skyshard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from trainer.config import (MODELS, STRATEGIES, ConfigError, default_config, get_dotted,
                            load_config, parse_assignment)
from trainer.distribute import (JOIN_TIMEOUT_S, TF_CONFIG, ClusterError, ClusterSpec,
                                cluster_from_environment)

DESCRIPTION_EPILOG = """\
examples:
  skyshard train export/ runs/r1
  skyshard train export/ runs/r2 --config my.toml --epochs 40 --set train.loss=focal
  skyshard train export/ runs/r1 --resume            # after a crash: from the last epoch
  skyshard train export/ runs/k2 --fold 2            # k-fold: validate on fold 2
  skyshard train export/ runs/g2 --strategy mirrored  # every local GPU
  skyshard train export/ runs/mw --strategy multiworker \
      --workers host1:2222,host2:2222 --worker-index 0  # on host1; index 1 on host2
  skyshard export my-camera/ mine/ --like builtin     # fine-tune the built-in model:
  skyshard train mine/ runs/mine --init builtin --epochs 20 --learning-rate 0.0003

The defaults and every config key are in trainer/default.toml (skyshard train --print-config).
"""

#: flag dest -> dotted config key
FLAG_KEYS = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "model": "model.name",
    "seed": "train.seed",
    "fold": "data.fold",
    "ram_budget_gb": "memory.ram_budget_gb",
    "strategy": "train.strategy",
    "init": "model.init",
}


def default_help(key: str, what: str = "", defaults: dict[str, Any] | None = None) -> str:
    """``"train.epochs (default 40)"``: the config key, what it is, its default from
    trainer/default.toml (so help never drifts from the defaults)."""
    value = get_dotted(defaults or default_config(), key)
    shown = f"{value:g}" if isinstance(value, float) else value
    return f"{key}{': ' + what if what else ''} (default {shown})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = DESCRIPTION_EPILOG
    defaults = default_config()
    parser.add_argument("export", nargs="?", metavar="EXPORT",
                        help="export folder (holds manifest.json)")
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="run folder to create (or to --resume); a URL such as "
                             "s3://bucket/runs/r1 is trained in a local working copy uploaded "
                             "after every epoch")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="TOML file overriding any subset of the defaults")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help=default_help("train.epochs", defaults=defaults))
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=default_help("train.batch_size", defaults=defaults))
    parser.add_argument("--learning-rate", type=float, metavar="LR",
                        help=default_help("train.learning_rate", defaults=defaults))
    parser.add_argument("--model", choices=MODELS,
                        help=default_help("model.name", defaults=defaults))
    parser.add_argument("--seed", type=int, metavar="N",
                        help=default_help("train.seed", defaults=defaults))
    parser.add_argument("--init", metavar="RUN",
                        help="model.init: start from a trained run's weights and scaler (a run "
                             "folder, or `builtin` for the model shipped with skyshard); export "
                             "the frames --like it")
    parser.add_argument("--fold", type=int, metavar="K",
                        help="k-fold: pool train+val, validate on fold K, train on the others")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="any config key, e.g. --set augment.mixup=true (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN from its last completed epoch with its saved config "
                             "(only the epochs, patience and memory settings may change)")
    parser.add_argument("--ram-budget-gb", type=float, metavar="GB",
                        help=default_help("memory.ram_budget_gb",
                                          "stop when the trainer's RSS passes this", defaults))
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help=default_help("train.strategy", "default: one device; mirrored: "
                                          "every local GPU; multiworker: one process per "
                                          "machine, from TF_CONFIG or --workers", defaults))
    parser.add_argument("--workers", metavar="HOST:PORT,...",
                        help="multiworker: every worker's address, the chief first (writes "
                             "TF_CONFIG for this process, with --worker-index)")
    parser.add_argument("--worker-index", type=int, metavar="I",
                        help="multiworker: this process's position in --workers (0: the chief, "
                             "which writes the run folder)")
    parser.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT_S, metavar="SECONDS",
                        help="multiworker: how long to wait for the other workers to start "
                             "(default %(default).0f)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration as TOML and exit")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted config overrides: ``--set`` first, then the dedicated flags (which win)."""
    overrides = dict(parse_assignment(text) for text in args.assignments)
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    return overrides


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from trainer.config import dump_toml

    try:
        base = _saved_config(args.run) if args.resume and args.run else None
        config = load_config(args.config, overrides_from_args(args), base=base)
    except (ConfigError, FileNotFoundError, ValueError) as exc:  # ValueError: a damaged run.json
        print(f"skyshard train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_toml(config), end="")
        return 0
    if not args.export or not args.run:
        print("skyshard train: EXPORT and RUN are required", file=sys.stderr)
        return 2
    try:
        cluster = _cluster(args, config)
    except ClusterError as exc:
        print(f"skyshard train: {exc}", file=sys.stderr)
        return 2

    from skyshard.locks import FolderError
    from skyshard.manifest import ManifestError, ShardIntegrityError
    from skyshard.run_record import RunRecordError
    from trainer.callbacks import MemoryBudgetExceeded
    from trainer.train import RunFolderError, WorkerLost, train

    try:
        train(args.export, args.run, config, resume=args.resume,
              echo=lambda line: print(line, flush=True), cluster=cluster,
              join_timeout=args.join_timeout)
    except (ShardIntegrityError, ManifestError, ConfigError, RunFolderError, RunRecordError,
            FolderError, ClusterError) as exc:
        print(f"skyshard train: {exc}", file=sys.stderr)
        return 2
    except MemoryBudgetExceeded as exc:
        print(f"skyshard train: {exc}", file=sys.stderr)
        return 3
    except WorkerLost as exc:
        print(f"skyshard train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"skyshard train: interrupted; `skyshard train {args.export} {args.run} "
              "--resume` continues from the last completed epoch", file=sys.stderr)
        return 130
    return 0


def _cluster(args: argparse.Namespace, config: dict[str, Any]) -> ClusterSpec | None:
    """The multi-worker cluster: ``--workers``/``--worker-index`` (which also write
    ``TF_CONFIG`` for this process), else ``TF_CONFIG``; ``None`` for one worker.

    Raises
    ------
    ClusterError
        One of the two flags without the other, the flags with another strategy than
        ``multiworker``, or an unusable address list or ``TF_CONFIG``.
    """
    flags = (args.workers is not None, args.worker_index is not None)
    if any(flags) and not all(flags):
        raise ClusterError("--workers and --worker-index go together")
    if not all(flags):
        if config["train"]["strategy"] != "multiworker":
            return None
        return cluster_from_environment()
    if config["train"]["strategy"] != "multiworker":
        raise ClusterError(f"--workers needs --strategy multiworker (train.strategy is "
                           f"{config['train']['strategy']!r})")
    cluster = ClusterSpec.from_flags(args.workers, args.worker_index)
    os.environ[TF_CONFIG] = cluster.tf_config()
    return cluster


def _saved_config(run_dir: str) -> dict[str, Any]:
    from skyshard.run_record import RunRecord

    run = RunRecord.read(run_dir)
    if run.is_ensemble:
        raise ConfigError(f"{run_dir} is an ensemble (skyshard ensemble), not a training run; "
                          "there is nothing to resume")
    return run.config
