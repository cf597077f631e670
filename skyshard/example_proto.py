"""``tf.train.Example`` encoding and decoding without importing TensorFlow.

The export runs on Beam workers where importing TensorFlow costs ~4 s and ~700 MB per process.
The Example message is tiny and stable, so it is declared here with the protobuf runtime, using
TensorFlow's own package and field numbers (``tensorflow/core/example/{example,feature}.proto``):
the bytes are identical to what ``tf.train.Example.SerializeToString`` produces and
``tf.io.parse_single_example`` reads them (tested in ``tests/test_records.py``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _build_messages():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="skyshard/tensorflow_example.proto", package="tensorflow", syntax="proto3")

    def add_field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None,
                  packed=None, oneof_index=None):
        field = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            field.type_name = type_name
        if packed is not None:
            field.options.packed = packed
        if oneof_index is not None:
            field.oneof_index = oneof_index
        return field

    bytes_list = fdp.message_type.add(name="BytesList")
    add_field(bytes_list, "value", 1, _F.TYPE_BYTES, _F.LABEL_REPEATED)
    float_list = fdp.message_type.add(name="FloatList")
    add_field(float_list, "value", 1, _F.TYPE_FLOAT, _F.LABEL_REPEATED, packed=True)
    int64_list = fdp.message_type.add(name="Int64List")
    add_field(int64_list, "value", 1, _F.TYPE_INT64, _F.LABEL_REPEATED, packed=True)

    feature = fdp.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    add_field(feature, "bytes_list", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.BytesList",
              oneof_index=0)
    add_field(feature, "float_list", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.FloatList",
              oneof_index=0)
    add_field(feature, "int64_list", 3, _F.TYPE_MESSAGE, type_name=".tensorflow.Int64List",
              oneof_index=0)

    features = fdp.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    add_field(entry, "key", 1, _F.TYPE_STRING)
    add_field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    add_field(features, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
              type_name=".tensorflow.Features.FeatureEntry")

    example = fdp.message_type.add(name="Example")
    add_field(example, "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")

    # A private pool: never clashes with TensorFlow's own registration of the same names.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _build_messages()


def encode_example(fields: Mapping[str, object]) -> bytes:
    """Serialise a flat mapping into ``tf.train.Example`` bytes.

    Value types map as TensorFlow's do: ``bytes``/``str`` -> bytes_list, ``int``/integer arrays ->
    int64_list, ``float``/float arrays -> float_list. Map keys are written in sorted order so the
    same fields always give the same bytes (deterministic export).
    """
    example = Example()
    for name in sorted(fields):
        value = fields[name]
        feature = example.features.feature[name]
        if isinstance(value, (bytes, str)):
            feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)
            continue
        array = np.asarray(value)
        if array.dtype.kind in "iub":
            feature.int64_list.value.extend(int(v) for v in array.reshape(-1))
        elif array.dtype.kind == "f":
            feature.float_list.value.extend(array.astype(np.float32).reshape(-1).tolist())
        else:
            raise TypeError(f"field {name!r}: cannot encode values of dtype {array.dtype}")
    return example.SerializeToString(deterministic=True)


def decode_example(data: bytes) -> dict[str, object]:
    """Parse ``tf.train.Example`` bytes into ``{name: bytes | np.ndarray}``.

    bytes_list fields with one value come back as ``bytes``; numeric lists as 1-D arrays
    (float32 or int64).
    """
    example = Example.FromString(data)
    out: dict[str, object] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values = list(feature.bytes_list.value)
            out[name] = values[0] if len(values) == 1 else values
        elif kind == "float_list":
            out[name] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[name] = np.asarray(feature.int64_list.value, dtype=np.int64)
        else:
            out[name] = None
    return out
