"""``skyshard pretrain EXPORT [EXPORT ...] OUT [--epochs N] [--config FILE.toml] [--set K=V]``

Import-light: TensorFlow is imported inside :func:`run`, so ``skyshard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from cli.train import default_help
from trainer.config import MODELS, ConfigError, default_config, load_config, parse_assignment

EPILOG = """\
examples:
  skyshard export night/ night-export/ --unlabeled --like export/manifest.json
  skyshard pretrain export/ night-export/ encoder/          # train split + every night frame
  skyshard train export/ run/ --set model.encoder=encoder/  # the image branch starts from it

Labels are never read: any export can teach the encoder, the more frames the better. From a
labelled export only pretrain.splits are read (default: train), so validation and test frames
stay unseen. The encoder has the [model] architecture of the config; train with the same one.
Settings: the [pretrain] table of trainer/default.toml (skyshard train --print-config).
"""

#: flag dest -> dotted config key
FLAG_KEYS = {"epochs": "pretrain.epochs", "batch_size": "pretrain.batch_size",
             "model": "model.name", "seed": "train.seed", "ram_budget_gb": "memory.ram_budget_gb"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    defaults = default_config()
    parser.add_argument("exports", nargs="+", metavar="EXPORT",
                        help="export folders whose frames teach the encoder (labels unused)")
    parser.add_argument("out", metavar="OUT", help="folder to create: encoder.keras, "
                        "pretrain.json, pretrain_curves.png, tensorboard/")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="TOML file overriding any subset of the defaults")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help=default_help("pretrain.epochs", defaults=defaults))
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=default_help("pretrain.batch_size", "pairs per step", defaults))
    parser.add_argument("--model", choices=MODELS,
                        help=default_help("model.name", defaults=defaults))
    parser.add_argument("--seed", type=int, metavar="N",
                        help="random seed of pretraining: shuffling, views, initial weights "
                             f"(config key train.seed, shared with train; default "
                             f"{defaults['train']['seed']})")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="any config key, e.g. --set pretrain.temperature=0.5 (repeatable)")
    parser.add_argument("--ram-budget-gb", type=float, metavar="GB",
                        help=default_help("memory.ram_budget_gb", "stop when the RSS passes "
                                          "this", defaults))


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from skyshard.storage import refuse_urls

    refused = refuse_urls([("OUT", args.out)], "the encoder folder is written locally (or on a "
                          "mounted filesystem)")
    if refused:
        print(f"skyshard pretrain: {refused}", file=sys.stderr)
        return 2
    overrides = dict(parse_assignment(text) for text in args.assignments)
    overrides.update({key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
                      if getattr(args, dest, None) is not None})
    try:
        config = load_config(args.config, overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"skyshard pretrain: {exc}", file=sys.stderr)
        return 2

    from skyshard.locks import FolderError
    from skyshard.manifest import ManifestError, ShardIntegrityError
    from trainer.callbacks import MemoryBudgetExceeded
    from trainer.pretrain import pretrain

    try:
        pretrain(args.exports, args.out, config, echo=lambda line: print(line, flush=True))
    except (ShardIntegrityError, ManifestError, ConfigError, FolderError) as exc:
        print(f"skyshard pretrain: {exc}", file=sys.stderr)
        return 2
    except MemoryBudgetExceeded as exc:
        print(f"skyshard pretrain: {exc}", file=sys.stderr)
        return 3
    return 0
