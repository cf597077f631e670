"""Reader memory: a small compressed file that decompresses into hundreds of megabytes becomes a
dead letter of stage ``limits`` instead of taking the machine's memory (``--reader-memory-mb``):
refused from its header where the header already says so, and stopped by the reader helper's
memory cap where it does not."""

from __future__ import annotations

import bz2
import gzip
import io

import numpy as np
import pytest

from exporter.extract import frame_arrays
from exporter.frame import FrameError
from exporter.readers import read_frame
from exporter.spec import DEFAULT_READER_MEMORY_MB, ExportSpec
from skyshard.manifest import Manifest


def zeros_fits(side: int) -> bytes:
    """A FITS file of ``side`` x ``side`` float64 zeros: ``8 * side**2`` bytes of pixels."""
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.PrimaryHDU(np.zeros((side, side))).writeto(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """4000 x 4000 float64 zeros (128 MB of pixels) as a bzip2 file of about 1 kB, and
    2000 x 2000 ones (32 MB) as gzip."""
    folder = tmp_path_factory.mktemp("bombs")
    big = folder / "flat_4000.fits.bz2"
    big.write_bytes(bz2.compress(zeros_fits(4000), 1))
    small = folder / "flat_2000.fits.gz"
    small.write_bytes(gzip.compress(zeros_fits(2000), 1))
    assert big.stat().st_size < 4096
    return {"big": big, "small": small}


def test_a_compressed_frame_that_would_need_too_much_is_refused_from_its_header(bombs):
    """2000^2 float64, gzip: 30.5 MiB decoded + a 15.3 MiB float32 plane, before any of it is
    decompressed."""
    with pytest.raises(FrameError) as refused:
        read_frame(bombs["small"], max_bytes=40 << 20)
    assert refused.value.stage == "limits"
    message = str(refused.value)
    assert "needs at least 45 MB (30 MB of decoded data and a 15 MB float32 plane)" in message
    assert "40 MB, --reader-memory-mb" in message
    assert read_frame(bombs["small"], max_bytes=64 << 20).data.shape == (2000, 2000)


def test_the_reader_helper_stops_a_frame_that_needs_more_than_its_cap(bombs):
    """The header of the bzip2 file says 183 MiB (decoded data + one plane): under a 192 MiB
    cap, so it is decoded, and the helper's memory cap stops it; the next file is read by the
    same helper as usual."""
    capped = ExportSpec(classes=[], image_size=32, file_timeout=120, reader_memory_mb=192)
    with pytest.raises(FrameError) as refused:
        frame_arrays(str(bombs["big"]), capped)
    assert refused.value.stage == "limits"
    assert "out of memory" in str(refused.value) and "192 MB, --reader-memory-mb" in \
        str(refused.value)
    assert frame_arrays(str(bombs["small"]), capped)["image"].shape == (32, 32, 1)


def test_the_default_cap_reads_such_a_frame(bombs):
    spec = ExportSpec(classes=[], image_size=32, file_timeout=120)
    assert spec.reader_memory_mb == DEFAULT_READER_MEMORY_MB
    assert frame_arrays(str(bombs["big"]), spec)["image"].shape == (32, 32, 1)


def test_the_cap_is_an_export_option_recorded_in_the_manifest(tmp_path):
    from cli.export import build_spec
    from cli.main import build_parser

    args, _ = build_parser().parse_known_args(["export", "in", "out", "--reader-memory-mb",
                                               "512"])
    assert build_spec(args, None).reader_memory_mb == 512
    from synthetic_export import write_synthetic_export

    export = write_synthetic_export(tmp_path / "export", per_class={"train": 1, "val": 1,
                                                                     "test": 1})
    manifest = Manifest.read(export)
    assert manifest.reader_memory_mb is None  # made before there was a cap: the default
    assert ExportSpec.from_manifest(manifest).reader_memory_mb == DEFAULT_READER_MEMORY_MB
    written = Manifest.from_json({**manifest.to_json(), "reader_memory_mb": 512})
    assert ExportSpec.from_manifest(written).reader_memory_mb == 512
    assert written.to_json()["reader_memory_mb"] == 512
