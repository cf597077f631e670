"""Training configuration: plain data, read from TOML, validated, saved with the run.

The defaults live in ``trainer/default.toml`` (documented there). A user file overrides any
subset; ``KEY=VALUE`` overrides (dotted keys, TOML values) come last. Unknown keys are errors so
that a typo never silently trains with a default.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.toml")

#: Tables whose keys are names chosen by the user (classes, policy names).
_OPEN_TABLES = ("augment.classes", "augment.policies")

MODELS = ("separable", "simple_cnn", "resnet50v2", "efficientnetv2b0", "vit_tiny")
SCHEDULES = ("cosine", "cosine_restarts", "constant")
LOSSES = ("crossentropy", "focal")
MONITORS = ("val_f1_macro", "val_loss")
#: ``train.strategy``: where a run trains (:mod:`trainer.distribute`).
STRATEGIES = ("default", "mirrored", "multiworker")
OOD_METHODS = ("mahalanobis", "none")

#: Memory settings that leave the optimisation unchanged (same steps, schedule and model): the
#: ways out of an exceeded memory budget that ``--resume`` accepts.
MEMORY_KEYS = ("memory.ram_budget_gb", "memory.sample_seconds", "data.shuffle_buffer_mb",
               "data.tfdata_ram_fraction", "data.val_batch_size")

#: What is fitted after training (``[calibration]``): it never changes the optimisation.
CALIBRATION_KEYS = ("calibration.temperature", "calibration.low_confidence_share",
                    "calibration.ood", "calibration.ood_quantile", "calibration.header_veto_max")

#: Keys that may change when a run is resumed; anything else would make it another run.
RESUMABLE_CHANGES = ("train.epochs", "train.patience", "train.tensorboard", *MEMORY_KEYS,
                     *CALIBRATION_KEYS)


class ConfigError(ValueError):
    """A configuration that cannot train: unknown key, wrong type, or a forbidden combination."""


def default_config() -> dict[str, Any]:
    """Read the default configuration.

    Returns
    -------
    dict
        ``trainer/default.toml`` as plain data (a fresh copy on every call).
    """
    with open(DEFAULT_CONFIG_PATH, "rb") as stream:
        return tomllib.load(stream)


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None,
                base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build and validate a run's configuration.

    Layers, each over the one before: the defaults (or ``base`` over them), the TOML file at
    ``path``, then the dotted ``overrides``.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file overriding any subset of the keys; ``None`` or ``""``: none.
    overrides : mapping of str to object, optional
        Dotted key -> value (``{"train.epochs": 5}``), applied last.
    base : mapping, optional
        A configuration to start from instead of the defaults alone, e.g. a resumed run's saved
        one; keys it lacks keep their default.

    Returns
    -------
    dict
        The effective configuration.

    Raises
    ------
    ConfigError
        An unreadable file, an unknown key, or a configuration :func:`validate` refuses.
    """
    config = merge(default_config(), base) if base is not None else default_config()
    if path:
        try:
            with open(path, "rb") as stream:
                user = tomllib.load(stream)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        config = merge(config, user)
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    validate(config)
    return config


def merge(base: dict, update: Mapping, prefix: str = "") -> dict:
    """Deep-merge ``update`` into a copy of ``base``.

    Parameters
    ----------
    base : dict
        The configuration to start from; not modified.
    update : mapping
        Values to set: tables are merged key by key, anything else replaces (deep-copied).
    prefix : str, default ""
        The dotted path of ``base`` within the whole configuration (for recursion and messages).

    Returns
    -------
    dict
        The merged copy.

    Raises
    ------
    ConfigError
        A key ``base`` lacks, outside the open tables (``augment.classes``,
        ``augment.policies``).
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in out and not _is_open(prefix.rstrip(".")):
            raise ConfigError(f"unknown config key {dotted!r}")
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_open(table: str) -> bool:
    """Return whether the dotted ``table`` is, or lies inside, a table of user-chosen names."""
    return any(table == t or table.startswith(t + ".") for t in _OPEN_TABLES)


def set_dotted(config: dict, key: str, value: Any) -> None:
    """Set one value by its dotted key, in place: ``set_dotted(cfg, "train.epochs", 5)``.

    Parameters
    ----------
    config : dict
        The configuration to change.
    key : str
        Dotted key; it must exist, except inside the open tables, where missing tables are
        created.
    value : object
        The new value.

    Raises
    ------
    ConfigError
        An unknown key, or a key that goes through a value rather than a table.
    """
    *parents, leaf = key.split(".")
    node = config
    for depth, name in enumerate(parents):
        if name not in node:
            if not _is_open(".".join(parents[:depth])):
                raise ConfigError(f"unknown config key {key!r}")
            node[name] = {}
        node = node[name]
        if not isinstance(node, dict):
            raise ConfigError(f"config key {key!r}: {'.'.join(parents[:depth + 1])} is a value")
    if leaf not in node and not _is_open(".".join(parents)):
        raise ConfigError(f"unknown config key {key!r}")
    node[leaf] = value


def get_dotted(config: Mapping, key: str) -> Any:
    """Read one value by its dotted key: ``get_dotted(cfg, "train.epochs")``.

    Parameters
    ----------
    config : mapping
        The configuration.
    key : str
        Dotted key.

    Returns
    -------
    object
        The value.

    Raises
    ------
    KeyError
        A name of the key that does not exist.
    """
    node: Any = config
    for name in key.split("."):
        node = node[name]
    return node


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line ``KEY=VALUE``: ``"train.epochs=5"`` -> ``("train.epochs", 5)``.

    Parameters
    ----------
    text : str
        ``KEY=VALUE``; the value is read as TOML, and text that is not TOML is taken as a string
        (so ``model.name=simple_cnn`` works without quotes).

    Returns
    -------
    tuple of (str, object)
        The stripped key and the value.

    Raises
    ------
    ConfigError
        No ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def validate(config: Mapping[str, Any]) -> None:
    """Check that a configuration can train.

    Parameters
    ----------
    config : mapping
        A complete configuration (all tables of ``default.toml``).

    Raises
    ------
    ConfigError
        Naming the key: a value outside its choices or range, a wrong type, focal loss together
        with class weights, an unknown augmentation policy or policy key, or unusable pretraining
        settings.
    """
    train, data, model = config["train"], config["data"], config["model"]
    _check_choice("train.schedule", train["schedule"], SCHEDULES)
    _check_choice("train.loss", train["loss"], LOSSES)
    _check_choice("train.monitor", train["monitor"], MONITORS)
    _check_choice("train.strategy", train["strategy"], STRATEGIES)
    if not isinstance(train["mixed_precision"], bool):
        raise ConfigError(f"train.mixed_precision must be true or false, got "
                          f"{train['mixed_precision']!r}")
    _check_choice("model.name", model["name"], MODELS)
    _check_choice("model.head", model["head"], ("gap", "flatten"))
    _check_choice("model.norm", model["norm"], ("batch", "group"))
    _check_int("model.norm_groups", model["norm_groups"], minimum=1)
    _check_choice("model.vit_stem", model["vit_stem"], ("patch", "conv"))
    _check_choice("model.vit_position", model["vit_position"], ("learned", "sincos"))
    _check_choice("data.cache", data["cache"], ("none", "disk"))
    if train["loss"] == "focal" and train["class_weights"] != "none":
        raise ConfigError(
            "train.loss = 'focal' and train.class_weights are both set: use class weights OR "
            "focal loss with a per-class alpha (train.focal_alpha), never both; set "
            "train.class_weights = 'none' or train.loss = 'crossentropy'")
    _check_weights("train.class_weights", train["class_weights"], ("none", "balanced"))
    _check_weights("train.focal_alpha", train["focal_alpha"], ("balanced",))
    for key in ("epochs", "batch_size", "gradient_accumulation_steps"):
        _check_int(f"train.{key}", train[key], minimum=1)
    _check_int("train.steps_per_epoch", train["steps_per_epoch"], minimum=0)
    _check_int("train.patience", train["patience"], minimum=0)
    _check_int("data.fold", data["fold"], minimum=-1)
    if not 0.0 <= float(data["balance_power"]) <= 1.0:
        raise ConfigError(f"data.balance_power must be in [0, 1], got {data['balance_power']}")
    if not 0.0 <= float(train["label_smoothing"]) < 1.0:
        raise ConfigError(f"train.label_smoothing must be in [0, 1), got "
                          f"{train['label_smoothing']}")
    if not 0.0 <= float(config["features"]["header_dropout"]) < 1.0:
        raise ConfigError(f"features.header_dropout must be in [0, 1), got "
                          f"{config['features']['header_dropout']}")
    if float(config["features"]["clip"]) < 0:
        raise ConfigError("features.clip must be >= 0 (0: no clipping)")
    if float(train["learning_rate"]) <= 0:
        raise ConfigError("train.learning_rate must be positive")
    if float(config["memory"]["ram_budget_gb"]) <= 0:
        raise ConfigError("memory.ram_budget_gb must be positive")
    if not model["filters"] or not all(isinstance(f, int) and f > 0 for f in model["filters"]):
        raise ConfigError(f"model.filters must be positive integers, got {model['filters']}")
    if not isinstance(model["encoder"], str):
        raise ConfigError(f"model.encoder must be a folder path or \"\", got {model['encoder']!r}")
    _validate_policies(config["augment"])
    _validate_pretrain(config["pretrain"], config["augment"])
    _validate_calibration(config["calibration"])


def _validate_calibration(calibration: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for unusable ``[calibration]`` settings."""
    if not isinstance(calibration["temperature"], bool):
        raise ConfigError(f"calibration.temperature must be true or false, got "
                          f"{calibration['temperature']!r}")
    _check_choice("calibration.ood", calibration["ood"], OOD_METHODS)
    for key, low, high in (("low_confidence_share", 0.0, 0.5), ("ood_quantile", 0.5, 1.0),
                           ("header_veto_max", 0.0, 0.5)):
        value = calibration[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not low < value < high):
            raise ConfigError(f"calibration.{key} must be a number between {low} and {high} "
                              f"(exclusive), got {value!r}")


def _validate_pretrain(pretrain: Mapping[str, Any], augment: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for unusable ``[pretrain]`` settings (``augment`` holds the
    policies ``pretrain.policy`` may name).
    """
    for key in ("epochs", "batch_size", "projection_units"):
        _check_int(f"pretrain.{key}", pretrain[key], minimum=1)
    if pretrain["batch_size"] < 2:
        raise ConfigError("pretrain.batch_size must be >= 2: the other pairs are the negatives")
    for key in ("learning_rate", "temperature"):
        if not _positive_number(pretrain[key]):
            raise ConfigError(f"pretrain.{key} must be a positive number, got {pretrain[key]!r}")
    if pretrain["policy"] not in augment["policies"]:
        raise ConfigError(f"pretrain.policy names {pretrain['policy']!r}; defined policies: "
                          f"{sorted(augment['policies'])}")
    if (not isinstance(pretrain["splits"], list) or not pretrain["splits"]
            or not all(isinstance(s, str) for s in pretrain["splits"])):
        raise ConfigError(f"pretrain.splits must be a list of split names, got "
                          f"{pretrain['splits']!r}")


def _validate_policies(augment: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for an augmentation policy with unknown keys or a crop outside
    ``(0, 1]``, or a class mapped to a policy that is not defined.
    """
    policies = augment["policies"]
    fields = set(policies["none"])
    for name, policy in policies.items():
        unknown = set(policy) - fields
        if unknown:
            raise ConfigError(f"augment.policies.{name}: unknown key(s) {sorted(unknown)}; "
                              f"a policy has {sorted(fields)}")
        crop = float(policy.get("crop_fraction", 1.0))
        if not 0.0 < crop <= 1.0:
            raise ConfigError(f"augment.policies.{name}.crop_fraction must be in (0, 1]")
    for class_name, policy in [*augment["classes"].items(), ("*", augment["default_policy"])]:
        if policy not in policies:
            raise ConfigError(f"augment.classes.{class_name} names policy {policy!r}; defined "
                              f"policies: {sorted(policies)}")


def _check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check_weights(key: str, value: Any, words: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``words``, a positive number, or a
    non-empty list of positive numbers.
    """
    if isinstance(value, str):
        _check_choice(key, value, words)
    elif isinstance(value, list):
        if not value or not all(_positive_number(v) for v in value):
            raise ConfigError(f"{key}: a list must hold one positive number per class")
    elif not _positive_number(value):
        raise ConfigError(f"{key} must be {' | '.join(map(repr, words))}, a number or a list")


def _positive_number(value: Any) -> bool:
    """Return whether ``value`` is a finite number > 0 (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def resume_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The keys that would make a resumed run another run.

    Parameters
    ----------
    saved : mapping
        The configuration the run was started with. Keys it lacks (added to skyshard after the
        run started) count at their default, so a run started by an older version resumes
        unless one of them is changed.
    wanted : mapping
        The configuration asked for now.

    Returns
    -------
    list of str
        Dotted keys where ``wanted`` differs from ``saved`` (tables and keys in sorted order),
        except :data:`RESUMABLE_CHANGES`.
    """
    saved = merge(default_config(), saved)
    return [key for key in _diff(saved, wanted) if key not in RESUMABLE_CHANGES]


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Return the dotted keys (after ``prefix``) where the nested mappings ``a`` and ``b``
    differ, tables and keys in sorted order."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def dump_toml(config: Mapping[str, Any]) -> str:
    """Write a configuration as TOML.

    Parameters
    ----------
    config : mapping
        Plain data: tables of scalars (bool, int, float, str), lists and tables.

    Returns
    -------
    str
        TOML text that ``tomllib`` reads back as ``config``.

    Raises
    ------
    ConfigError
        A value TOML cannot hold (``None``, another type).
    """
    lines: list[str] = []
    _dump_table(config, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    """Append the TOML lines of ``table`` at the dotted ``path`` to ``lines``: its scalars under a
    ``[path]`` header, then its subtables.
    """
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if path and (scalars or not table):
        lines.extend(["", f"[{'.'.join(path)}]"])
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, Mapping):
            _dump_table(value, [*path, _toml_key(key)], lines)


def _toml_key(key: str) -> str:
    """Return ``key`` as a TOML key: bare when alphanumeric (``_`` and ``-`` allowed), else
    quoted."""
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    """Return ``value`` as TOML text; raise :class:`ConfigError` for a type TOML cannot hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as TOML")
