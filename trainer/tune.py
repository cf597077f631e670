"""Hyperparameter tuning with Optuna under the RAM budget: serial trials, pruning.

Each trial is an ordinary training run (``train``) in ``STUDY/trial-NNN/`` with the sampled
values as config overrides; the study lives in ``STUDY/study.journal`` (Optuna's file journal,
so an interrupted study continues where it stopped) and ``STUDY/study.json`` summarises it.
Trials run one after another in one process: the RSS budget is the process's, and a trial that
passes it is recorded (``memory_exceeded``) and pruned instead of ending the study.
"""

from __future__ import annotations

import copy
import gc
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

import keras
import optuna

from skyshard.files import write_json_atomic
from skyshard.locks import FolderLock, is_lock_file
from trainer.callbacks import MemoryBudgetExceeded
from trainer.config import ConfigError, load_config, merge
from trainer.train import train

DEFAULT_TUNE_PATH = Path(__file__).with_name("tune.toml")
JOURNAL_FILE = "study.journal"
SUMMARY_FILE = "study.json"


def load_tune_config(path: str | Path | None = None, trials: int | None = None,
                     epochs: int | None = None) -> dict[str, Any]:
    """Build a study's configuration.

    ``trainer/tune.toml``, overridden by the file at ``path``, then by ``trials`` and ``epochs``
    (given on the command line). ``[space]`` is replaced whole when the file gives one: a search
    space is chosen, not merged.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file overriding any subset of ``tune.toml``; ``None``: none.
    trials : int, optional
        ``study.trials``: how many trials the study should hold.
    epochs : int, optional
        ``study.epochs``: the epochs of each trial.

    Returns
    -------
    dict
        The study configuration: ``[study]`` settings and the ``[space]`` of dotted training
        keys to sample.

    Raises
    ------
    ConfigError
        An unknown key, or a space entry with neither ``low`` and ``high`` nor ``choices``.
    """
    with open(DEFAULT_TUNE_PATH, "rb") as stream:
        config = tomllib.load(stream)
    if path:
        with open(path, "rb") as stream:
            user = tomllib.load(stream)
        space = user.pop("space", None)
        config = merge(config, user)
        if space is not None:
            config["space"] = space
    if trials is not None:
        config["study"]["trials"] = int(trials)
    if epochs is not None:
        config["study"]["epochs"] = int(epochs)
    for key, spec in config["space"].items():
        if not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise ConfigError(f"tune space {key!r}: give low and high, or choices")
    return config


def suggest(trial: optuna.Trial, key: str, spec: Mapping[str, Any]) -> Any:
    """Sample one value of a training key for a trial.

    Parameters
    ----------
    trial : optuna.Trial
        The trial.
    key : str
        The dotted training key (the parameter's name in the study).
    spec : mapping
        ``choices`` (a list), or ``low`` and ``high`` (ints: an integer range; else a float
        range) with an optional ``log``.

    Returns
    -------
    object
        The sampled value.
    """
    if "choices" in spec:
        return trial.suggest_categorical(key, list(spec["choices"]))
    low, high = spec["low"], spec["high"]
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(key, low, high, log=bool(spec.get("log", False)))
    return trial.suggest_float(key, float(low), float(high), log=bool(spec.get("log", False)))


class PruneOnEpoch(keras.callbacks.Callback):
    """Report the monitored validation value to Optuna each epoch, and prune when it says so.

    Parameters
    ----------
    trial : optuna.Trial
        The trial being trained.
    monitor : str
        The logged value to report (``val_f1_macro`` or ``val_loss``); epochs without it are not
        reported.

    Raises
    ------
    optuna.TrialPruned
        From ``on_epoch_end``, when the pruner stops the trial.
    """

    def __init__(self, trial: optuna.Trial, monitor: str):
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned after epoch {epoch + 1} ({self.monitor} {value:.4f})")


def tune(export_dir: str | Path, study_dir: str | Path, train_config: Mapping[str, Any],
         tune_config: Mapping[str, Any], echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run, or continue, a study: serial trials, each an ordinary training run.

    Trial ``N`` trains in ``STUDY/trial-NNN/`` with the sampled values over ``train_config``, for
    the study's epochs. A trial that passes the memory budget is recorded (user attribute
    ``memory_exceeded``) and pruned rather than ending the study.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    study_dir : str or Path
        The study folder (created): ``study.journal`` (Optuna's journal, so an interrupted study
        continues), ``study.json`` and the trials' run folders.
    train_config : mapping
        The training configuration the trials start from.
    tune_config : mapping
        The study configuration (:func:`load_tune_config`).
    echo : callable, default print
        Receives the progress lines.

    Returns
    -------
    dict
        The summary written to ``study.json`` (:func:`summarise`).

    Raises
    ------
    ConfigError
        A continued study asked for other epochs or another monitored value.
    """
    study_dir = Path(study_dir)
    with FolderLock(study_dir, "skyshard tune"):
        return _tune(export_dir, study_dir, train_config, tune_config, echo)


def _tune(export_dir: str | Path, study_dir: Path, train_config: Mapping[str, Any],
          tune_config: Mapping[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    """:func:`tune`, holding the study folder's lock."""
    check_study_folder(study_dir)
    settings = tune_config["study"]
    monitor = train_config["train"]["monitor"]
    study = _study(study_dir, settings, "minimize" if "loss" in monitor else "maximize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_continued(study, study_dir, {"epochs": int(settings["epochs"]), "monitor": monitor})

    def objective(trial: optuna.Trial) -> float:
        overrides = {key: suggest(trial, key, spec) for key, spec in tune_config["space"].items()}
        config = trial_config(train_config, tune_config, overrides)
        run_dir = study_dir / f"trial-{trial.number:03d}"
        trial.set_user_attr("run", run_dir.name)
        echo(f"trial {trial.number}: {_short(overrides)}")
        try:
            record = train(export_dir, run_dir, config, echo=lambda line: echo(f"  {line}"),
                           extra_callbacks=[PruneOnEpoch(trial, monitor)])
        except MemoryBudgetExceeded as exc:
            trial.set_user_attr("memory_exceeded", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        finally:
            keras.backend.clear_session()
            gc.collect()
        trial.set_user_attr("peak_rss_mb", record.peak_rss_mb)
        if not record.best:
            raise optuna.TrialPruned("no validation value")
        return float(record.best["value"])

    remaining = int(settings["trials"]) - len(study.trials)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, n_jobs=1, gc_after_trial=True)
    summary = summarise(study, monitor)
    write_json_atomic(study_dir / SUMMARY_FILE, summary)
    best = summary["best"]
    echo("no completed trial" if best is None else
         f"best: trial {best['number']} ({monitor} {best['value']:.4f}) in "
         f"{study_dir / best['run']}: {_short(best['params'])}")
    return summary


def check_study_folder(study_dir: Path) -> None:
    """Refuse a study folder holding files ``tune`` does not write there (it owns
    ``study.journal`` and Optuna's lock beside it, ``study.json`` and the ``trial-NNN``
    run folders): a new study goes into a new or empty folder, a continued one into its own."""
    strangers = sorted(
        path.name for path in study_dir.iterdir()
        if not (is_lock_file(path.name) or path.name.startswith(JOURNAL_FILE)
                or path.name == SUMMARY_FILE or re.fullmatch(r"trial-\d{3,}", path.name)))
    if strangers:
        raise ConfigError(f"{study_dir} holds files skyshard tune did not write "
                          f"({', '.join(strangers[:5])}); choose a new or empty folder, or the "
                          "folder of the study to continue")


def check_continued(study: optuna.Study, study_dir: Path, terms: Mapping[str, Any]) -> None:
    """Keep a study's trials comparable.

    Records ``terms`` on a new study; on a continued one, trials of different lengths or goals
    would be ranked against each other, so any change is refused.

    Parameters
    ----------
    study : optuna.Study
        The study (its user attributes hold the recorded terms).
    study_dir : Path
        The study folder, for the message.
    terms : mapping
        What makes trials comparable: epochs per trial, the monitored value.

    Raises
    ------
    ConfigError
        A term differs from the one recorded.
    """
    for key, value in terms.items():
        recorded = study.user_attrs.get(key)
        if recorded is None:
            study.set_user_attr(key, value)
        elif recorded != value:
            raise ConfigError(
                f"the study in {study_dir} ran its trials with {key} = {recorded!r}, this command "
                f"asks for {value!r}: its trials would not be comparable. Continue it with the "
                f"same setting, or start a new study folder")


def trial_config(train_config: Mapping[str, Any], tune_config: Mapping[str, Any],
                 sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The training configuration of one trial.

    Parameters
    ----------
    train_config : mapping
        The training configuration the trials start from.
    tune_config : mapping
        The study configuration (``study.epochs``).
    sampled : mapping of str to object
        The trial's sampled values, by dotted key.

    Returns
    -------
    dict
        ``train_config`` with the sampled values and ``train.epochs`` set to the study's epochs;
        validated.

    Raises
    ------
    ConfigError
        A sampled value the configuration refuses.
    """
    overrides = {**sampled, "train.epochs": int(tune_config["study"]["epochs"])}
    return load_config(overrides=overrides, base=copy.deepcopy(dict(train_config)))


def _study(study_dir: Path, settings: Mapping[str, Any], direction: str) -> optuna.Study:
    """Create or reopen the study in its journal file.

    Parameters
    ----------
    study_dir : Path
        The study folder (``study.journal``).
    settings : mapping
        The ``[study]`` table (``pruner``, ``startup_trials``, ``warmup_epochs``, ``seed``).
    direction : {"minimize", "maximize"}
        Whether the monitored value is a loss.

    Returns
    -------
    optuna.Study
        Named ``skyshard``, with the TPE sampler and the median pruner (or none).

    Raises
    ------
    ConfigError
        A pruner other than ``median`` or ``none``.
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if settings["pruner"] == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=int(settings["startup_trials"]),
                                             n_warmup_steps=int(settings["warmup_epochs"]))
    elif settings["pruner"] != "none":
        raise ConfigError(f"study.pruner must be 'median' or 'none', got {settings['pruner']!r}")
    storage = JournalStorage(JournalFileBackend(str(study_dir / JOURNAL_FILE)))
    return optuna.create_study(study_name="skyshard", storage=storage, direction=direction,
                               load_if_exists=True, pruner=pruner,
                               sampler=optuna.samplers.TPESampler(seed=int(settings["seed"])))


def summarise(study: optuna.Study, monitor: str) -> dict[str, Any]:
    """Summarise a study for ``study.json``.

    Parameters
    ----------
    study : optuna.Study
        The study.
    monitor : str
        The monitored value.

    Returns
    -------
    dict
        ``monitor``, ``direction``, ``best`` (number, value, params and run folder of the best
        completed trial; ``None`` when none completed) and ``trials`` (number, state, value,
        params and user attributes of each).
    """
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               **t.user_attrs} for t in study.trials]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = None
    if complete:
        chosen = study.best_trial
        best = {"number": chosen.number, "value": chosen.value, "params": chosen.params,
                "run": chosen.user_attrs.get("run")}
    return {"monitor": monitor, "direction": study.direction.name.lower(), "best": best,
            "trials": trials}


def _short(values: Mapping[str, Any]) -> str:
    """Return sampled values as ``name=value`` pairs (the last part of each dotted key, floats to 3
    significant digits).
    """
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else
                     f"{k.split('.')[-1]}={v}" for k, v in values.items())
