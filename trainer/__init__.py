"""The trainer: an export's shards -> a Keras model in a run folder.

``config`` + ``default.toml`` (plain-data configuration), ``records`` (tf.data parsing),
``data`` (balanced streams, validation and evaluation datasets), ``augment`` (per-class
policies, MixUp/CutMix), ``layers`` + ``models`` (the model), ``optim`` (AdamW, schedules,
losses), ``callbacks`` (memory guard, early stopping, TensorBoard scalars, epoch report),
``checkpoints`` (crash-safe backups and best weights), ``history`` (``history.csv``),
``train`` (one run), ``uncertainty`` (temperature scaling, ECE, Mahalanobis distances,
thresholds) and ``calibrate`` (fitting them when a run or an ensemble is made), ``model_io``
(loading a run), ``plots``, ``tune`` (Optuna), ``pretrain`` (SimCLR), ``ensemble``. Only
``config``, ``history``, ``uncertainty`` and ``model_io`` are importable without TensorFlow; the
commands are in :mod:`cli`.
"""
