"""The records an export writes stay byte for byte what they were, unless a change means to alter
them: `skyshard sample OUT --per-class 20 --seed 3`, exported at `--image-size 64`, gives the
records whose sha256 per key are in ``data/records-sample-seed3-20-per-class-64px.json``.

A change that means to alter records (a new feature, a changed sample generator or reader)
regenerates the file: ``SKYSHARD_UPDATE_GOLDEN=1 pytest tests/test_record_identity.py``, and says
so in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from skyshard.example_proto import decode_example
from skyshard.tfrecord import read_records

GOLDEN = Path(__file__).parent / "data" / "records-sample-seed3-20-per-class-64px.json"


def record_digests(export: Path) -> dict[str, str]:
    """key -> sha256 of the record's bytes, over every shard of ``export``."""
    out = {}
    for shard in sorted(export.rglob("*.tfrecord-*")):
        for data in read_records(str(shard)):
            out[decode_example(data)["key"].decode()] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
def test_export_records_are_byte_identical_to_the_reference(tmp_path, capsys):
    from cli.main import main

    assert main(["sample", str(tmp_path / "frames"), "--per-class", "20", "--seed", "3"]) == 0
    assert main(["export", str(tmp_path / "frames"), str(tmp_path / "export"),
                 "--image-size", "64"]) == 0
    capsys.readouterr()
    digests = record_digests(tmp_path / "export")
    if os.environ.get("SKYSHARD_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(digests, sort_keys=True, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    changed = sorted(k for k in expected if digests.get(k) != expected[k])
    added = sorted(set(digests) - set(expected))
    assert not changed and not added, (f"{len(changed)} records differ (e.g. {changed[:5]}), "
                                       f"{len(added)} new (e.g. {added[:5]})")
