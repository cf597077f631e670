"""The ``skyshard`` command: one entry point, one subcommand per job.

Each subcommand lives in its own package and exposes ``add_arguments(parser)`` and
``run(args, extra) -> int``; ``extra`` holds arguments the subcommand did not declare (Beam
pipeline options for ``export`` and ``score``), passed on untouched. Subcommand modules are
imported only when needed so that ``skyshard --help`` and ``skyshard sample`` never load
TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from skyshard import __version__
from skyshard.runtime import configure_logging, quiet_tensorflow

#: name -> (module, one-line help, takes pass-through options)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "sample": ("cli.sample",
               "write a realistic labelled tree of sample frames (the demo data and test source)",
               False),
    "export": ("cli.export",
               "export FITS/TIFF frames to sharded TFRecords + manifest (an Apache Beam job)",
               True),
    "train": ("cli.train",
              "train a class-balanced Keras model from an export, streaming, under a RAM budget",
              False),
    "pretrain": ("cli.pretrain",
                 "self-supervised pretraining (SimCLR) of the image branch on unlabelled frames",
                 False),
    "tune": ("cli.tune",
             "tune hyperparameters with Optuna: serial trials, pruning, under the RAM budget",
             False),
    "ensemble": ("cli.ensemble",
                 "average trained runs (k-fold or seeds) into one run: a model of their mean",
                 False),
    "evaluate": ("cli.evaluate",
                 "measure a trained model on an export split: metrics, plots, HTML report",
                 False),
    "score": ("cli.score",
              "classify new frames (a folder or an unlabelled export): predictions.csv",
              True),
    "demo": ("cli.demo",
             "sample -> export -> train -> evaluate -> score, end to end, in a few minutes",
             False),
}

EPILOG = """\
typical night:
  skyshard sample frames/ --per-class 50
  skyshard export frames/ export/
  skyshard train export/ run/
  skyshard evaluate run/ export/
  skyshard score run/ /data/2026-11-28/ --out scored/

your unlabelled frames teach the image branch first (SimCLR):
  skyshard export archive/ archive-export/ --unlabeled --like export/manifest.json
  skyshard pretrain export/ archive-export/ encoder/
  skyshard train export/ run/ --set model.encoder=encoder/

k-fold (or several seeds), averaged into one model:
  skyshard train export/ runs/fold0 --fold 0      # ... up to --fold 4
  skyshard ensemble runs/fold0 runs/fold1 runs/fold2 runs/fold3 runs/fold4 --out runs/kfold
  skyshard evaluate runs/kfold export/

'skyshard COMMAND --help' explains each command. export and score accept any Apache Beam
pipeline option (--runner, --direct_num_workers, ...) and pass it on untouched.
"""


#: What an interrupted command leaves behind, and how to go on (``train`` says it itself).
INTERRUPTED = {
    "export": "OUT holds no manifest.json, so nothing downstream will read it; run the same "
              "command again to start over (it clears the leftovers)",
    "sample": "the files written so far are whole; the same command with --overwrite writes "
              "them again, byte for byte, and adds the rest",
    "pretrain": "run the same command again to start over",
    "score": "score.json, written last, is missing, so the same command scores again into the "
             "same --out (frames already sorted are recognised)",
}
#: How to get TensorFlow, for the commands that need it (the export and the sample do not).
NO_TENSORFLOW = ("pip install -c constraints.txt 'skyshard[cpu]' (or `make venv`), or "
                 "'skyshard[gpu]' with constraints-gpu.txt for CUDA (`make venv GPU=1`)")
INTERRUPTED_DEFAULT = ("nothing finished was written (outputs are written whole, at the end); "
                       "run the same command again")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyshard",
        description="Classify astronomical frames (bias, darks, flats, deep sky, planetary, "
                    "slit spectra) from FITS and TIFF files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skyshard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text, _) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub_parser.set_defaults(_module=module, _passthrough=COMMANDS[name][2])
        sub_parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        try:
            importlib.import_module(module).add_arguments(sub_parser)
        except ImportError as exc:  # a stage not installed must not break the other commands
            sub_parser.set_defaults(_import_error=exc)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if extra and not args._passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "_import_error", None):
        parser.error(f"'{args.command}' is unavailable: {args._import_error}")
    configure_logging(args.verbose)
    from skyshard.storage import StorageError

    try:
        return int(importlib.import_module(args._module).run(args, extra) or 0)
    except StorageError as exc:  # an object store that cannot be reached or refuses: one line
        print(f"skyshard {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "tensorflow":
            raise
        print(f"skyshard {args.command}: TensorFlow is not installed; install skyshard with "
              f"one of its extras: {NO_TENSORFLOW}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, RuntimeError) as exc:
        if not interrupted(exc):
            raise
        # Ctrl-C: one line that says what is left, not a traceback
        print(f"skyshard {args.command}: interrupted; "
              f"{INTERRUPTED.get(args.command, INTERRUPTED_DEFAULT)}", file=sys.stderr)
        return 130


def interrupted(exc: BaseException) -> bool:
    """True for Ctrl-C: a ``KeyboardInterrupt``, also as Apache Beam re-raises it from a
    transform (a ``RuntimeError`` caused by one, or naming it when the cause was lost)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        if isinstance(exc, RuntimeError) and str(exc).startswith("KeyboardInterrupt"):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
