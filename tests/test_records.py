"""The record contract: TF-free encoding is what TensorFlow reads, and corruption is caught."""

import numpy as np
import pytest

from skyshard import schema
from skyshard.example_proto import decode_example, encode_example
from skyshard.tfrecord import TFRecordCorruptError, read_records, write_record


def sample_fields(key="bias/Bias_0001.fits"):
    rng = np.random.default_rng(0)
    return {
        schema.IMAGE: rng.random((8, 8, 1)).astype(np.float16).tobytes(),
        schema.FEATURES: np.array([1.5, np.nan, -3.0], dtype=np.float32),
        schema.CONFIDENCES: np.array([1.0, 0.5, 0.0, 1.0], dtype=np.float32),
        schema.LABEL: 2,
        schema.CLASS_NAME: "flats",
        schema.KEY: key,
        schema.SHA256: "ab" * 32,
        schema.SPLIT: "train",
        schema.FOLD: 3,
    }


def test_encoding_is_deterministic_and_decodes():
    fields = sample_fields()
    data = encode_example(fields)
    assert data == encode_example(dict(reversed(list(fields.items()))))
    back = decode_example(data)
    assert back[schema.KEY] == fields[schema.KEY].encode()
    assert back[schema.LABEL].tolist() == [2]
    np.testing.assert_array_equal(back[schema.FEATURES], fields[schema.FEATURES])


def test_tensorflow_parses_our_bytes_identically():
    tf = pytest.importorskip("tensorflow")
    fields = sample_fields()
    data = encode_example(fields)
    example = tf.train.Example.FromString(data)
    assert example.SerializeToString(deterministic=True) == data
    parsed = tf.io.parse_single_example(data, {
        schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
        schema.FEATURES: tf.io.FixedLenFeature([3], tf.float32),
        schema.LABEL: tf.io.FixedLenFeature([], tf.int64),
        schema.KEY: tf.io.FixedLenFeature([], tf.string),
    })
    image = tf.reshape(tf.io.decode_raw(parsed[schema.IMAGE], tf.float16), (8, 8, 1)).numpy()
    assert image.tobytes() == fields[schema.IMAGE]
    assert int(parsed[schema.LABEL]) == 2
    assert np.isnan(parsed[schema.FEATURES].numpy()[1])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_tfrecord_files_round_trip_through_tensorflow(tmp_path, suffix):
    tf = pytest.importorskip("tensorflow")
    from skyshard.tfrecord import open_shard

    path = tmp_path / f"shard.tfrecord{suffix}"
    payloads = [encode_example(sample_fields(f"k/{i}.fits")) for i in range(5)]
    with open_shard(str(path), "wb") as stream:
        for data in payloads:
            write_record(stream, data)
    assert list(read_records(str(path))) == payloads
    compression = "GZIP" if suffix else None
    read_by_tf = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression)]
    assert read_by_tf == payloads


def test_corrupted_record_is_reported_with_the_file_name(tmp_path):
    path = tmp_path / "bad.tfrecord"
    with open(path, "wb") as stream:
        write_record(stream, encode_example(sample_fields()))
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(TFRecordCorruptError, match="bad.tfrecord"):
        list(read_records(str(path)))
    path.write_bytes(bytes(raw[:30]))
    with pytest.raises(TFRecordCorruptError, match="truncated"):
        list(read_records(str(path)))
