"""skyshard: classify astronomical frames from FITS and TIFF files.

The distribution is layered, each layer a top-level package that imports only those below it:

* ``skyshard`` (this package): the contracts every stage shares (record fields and file names in
  :mod:`~skyshard.schema`, the export's typed :mod:`~skyshard.manifest`, a run folder's typed
  :mod:`~skyshard.run_record`, TFRecord framing and ``tf.train.Example`` encoding without
  TensorFlow), atomic file writes, the per-folder lock every writing command holds
  (:mod:`~skyshard.locks`), checks of names that become paths (:mod:`~skyshard.names`), library
  versions, peak memory, logging set-up and fault injection for tests. It imports no stage.
* ``sample`` (realistic sample frames) and ``exporter`` (frames -> sharded TFRecords + manifest,
  an Apache Beam job);
* ``trainer`` (shards -> Keras model);
* ``evaluation`` (model -> metrics, predictions, sorted folders);
* ``cli``: the ``skyshard`` command and the demo, on top.
"""

__version__ = "0.1.0"
