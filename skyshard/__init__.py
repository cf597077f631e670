"""skyshard: classify astronomical frames from FITS and TIFF files.

The distribution has three stages, each a top-level package:
``exporter`` (frames -> sharded TFRecords + manifest, an Apache Beam job),
``trainer`` (shards -> Keras model) and ``evaluation`` (model -> metrics, predictions).
This package holds the command line and the small contracts they share.
"""

__version__ = "0.1.0"
