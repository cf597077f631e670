"""The trainer: an export's shards -> a Keras model in a run folder.

``cli`` (``skyshard train``), ``config`` + ``default.toml`` (plain-data configuration),
``records`` (tf.data parsing), ``data`` (balanced streams, validation and evaluation datasets),
``augment`` (per-class policies, MixUp/CutMix), ``layers`` + ``models`` (the model),
``optim`` (AdamW, schedules, losses), ``callbacks``, ``train`` (one run), ``model_io``
(loading a run), ``plots``, ``tune`` + ``tune_cli`` (Optuna). Only ``cli``, ``config``,
``model_io`` and ``tune_cli`` are importable without TensorFlow.
"""
