"""``skyshard sample``: the sample tree, its physics, formats, headers and broken files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.time import Time

from sample import (BAD_FILES, CLASSES, LABELS_FILE, UNREADABLE, SampleExistsError,
                             frame_rng, make_frame, plan_frame, write_bad_files,
                             write_sample_tree)
from sample.cameras import CAMERAS, draw_settings, read_out
from sample.headers import FRAME_TYPE_KEYS, PROGRAMS
from sample.writers import FAMILIES, FileFormat, fits_bytes
from skyshard.schema import DEFAULT_CLASSES, is_frame_file

TREE_PER_CLASS = 10


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_image(path: Path) -> np.ndarray:
    """First image of a FITS or TIFF file as float, as a reader would get it; raises when there
    is none."""
    if path.name.lower().endswith((".tif", ".tiff")):
        return tifffile.imread(path).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdus:
            for hdu in hdus:
                if hdu.is_image and hdu.data is not None and hdu.data.size:
                    return np.array(hdu.data, dtype=float)
    raise ValueError(f"{path.name}: no image")


def fits_header(path: Path) -> fits.Header:
    """The header holding the frame's cards (HDU 1 of a tile-compressed file)."""
    with fits.open(path) as hdus:
        return hdus[1].header if path.name.lower().endswith(".fz") else hdus[0].header


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("sample") / "frames"
    return out, write_sample_tree(out, per_class=TREE_PER_CLASS, seed=0, bad_files=True)


@pytest.fixture(scope="module")
def plans() -> list:
    """Many frame plans (no pixels): 120 per class."""
    return [plan_frame(c, i, frame_rng(11, c, i)) for c in CLASSES for i in range(120)]


def test_classes_match_the_project_default_label_set():
    assert CLASSES == DEFAULT_CLASSES


def test_tree_has_one_folder_per_class_with_the_frames(tree):
    out, paths = tree
    assert sorted(p.name for p in out.iterdir()) == sorted(CLASSES)
    per_class = Counter(p.parent.name for p in paths)
    assert per_class == {c: TREE_PER_CLASS for c in CLASSES}
    assert all(p.is_file() and is_frame_file(p.name) for p in paths)
    assert not list(out.rglob(".*.tmp"))


def test_same_seed_gives_identical_bytes_and_more_frames_keep_earlier_ones(tmp_path):
    first = write_sample_tree(tmp_path / "a", per_class=2, seed=5)
    again = write_sample_tree(tmp_path / "b", per_class=2, seed=5, jobs=2)
    bigger = write_sample_tree(tmp_path / "c", per_class=3, seed=5)
    other = write_sample_tree(tmp_path / "d", per_class=2, seed=6)
    relative = [p.relative_to(tmp_path / "a") for p in first]
    assert relative == [p.relative_to(tmp_path / "b") for p in again]
    assert [sha256(p) for p in first] == [sha256(p) for p in again]
    hashes_bigger = {p.relative_to(tmp_path / "c"): sha256(p) for p in bigger}
    assert all(hashes_bigger[r] == sha256(p) for r, p in zip(relative, first))
    assert not {sha256(p) for p in first} & {sha256(p) for p in other}


@pytest.mark.parametrize("compression", ["GZIP_1", "GZIP_2", "RICE_1"])
def test_tile_compressed_files_do_not_depend_on_the_clock(compression, monkeypatch):
    """gzip stamps the time into every compressed tile; a sample written a second later must
    still be the same bytes (its sha256 decides the export's split)."""
    data = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64)
    fmt = FileFormat("fz", "fz", "uint16", ".fz", compression=compression)
    written = []
    for clock in (1_000_000_000.0, 1_700_000_000.0):
        monkeypatch.setattr("time.time", lambda clock=clock: clock)
        written.append(fits_bytes(data, fits.Header({"EXPTIME": 1.0}), fmt))
    assert written[0] == written[1]
    with fits.open(io.BytesIO(written[0])) as hdus:
        assert np.array_equal(hdus[1].data, data)


def test_every_format_and_extension_occurs_and_none_belongs_to_one_class(tree):
    _, paths = tree
    extensions, encodings = set(), set()
    containers_per_class: dict[str, set[str]] = {c: set() for c in CLASSES}
    for path in paths:
        name = path.name.lower()
        extension = next(e for e in (".fits.gz", ".fits", ".fit", ".fts", ".fz", ".tiff",
                                     ".tif") if name.endswith(e))
        extensions.add(".tif" if extension == ".tiff" else extension)
        if extension in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                encodings.add(("tiff", page.dtype.itemsize * 8, page.samplesperpixel))
            containers_per_class[path.parent.name].add("tiff")
            continue
        header = fits_header(path)
        if extension == ".fz":
            with fits.open(path) as hdus:
                assert hdus[0].data is None and isinstance(hdus[1], fits.CompImageHDU)
        if extension == ".fits.gz":
            assert path.read_bytes()[:2] == b"\x1f\x8b"
        bzero = header.get("BZERO", 0)
        encodings.add(("fits", header["BITPIX"], bzero))
        containers_per_class[path.parent.name].add("fz" if extension == ".fz" else "fits")
    assert extensions == {".fits", ".fit", ".fts", ".fits.gz", ".fz", ".tif"}
    assert {("fits", 16, 32768), ("fits", 16, 0), ("fits", -32, 0), ("fits", 8, 0)} <= encodings
    assert {("tiff", 8, 1), ("tiff", 16, 1), ("tiff", 16, 3)} <= encodings
    assert all({"fits", "tiff"} <= kinds for kinds in containers_per_class.values())


def test_plans_spread_every_format_family_over_every_class(plans):
    by_class: dict[str, set[str]] = {c: set() for c in CLASSES}
    for plan in plans:
        by_class[plan.class_name].add(plan.fmt.name)
    assert set().union(*by_class.values()) == set(FAMILIES)
    assert all(len(families) >= 8 for families in by_class.values())
    eight_bit = [p for p in plans if p.settings.eight_bit]
    assert Counter(p.class_name for p in eight_bit)["planetary"] > len(eight_bit) / 3


def test_frame_sizes_overlap_between_classes(plans):
    shapes = {c: {p.shape for p in plans if p.class_name == c} for c in CLASSES}
    assert all(len(s) >= 8 for s in shapes.values())
    for a in CLASSES:
        for b in CLASSES:
            assert shapes[a] & shapes[b], (a, b)


def test_files_read_back_as_images_and_tiffs_have_no_fits_header(tree):
    _, paths = tree
    for path in paths:
        image = read_image(path)
        assert image.ndim in (2, 3)
        spatial = image.shape[1:] if image.shape[0] == 3 else image.shape[:2]  # FITS cube
        assert min(spatial) >= 200
        assert np.isfinite(image).all()
        if path.name.lower().endswith((".tif", ".tiff")):
            with tifffile.TiffFile(path) as tif:
                description = tif.pages[0].description or ""
            assert "SIMPLE" not in description and "IMAGETYP" not in description


def test_headers_follow_several_capture_program_conventions(tree):
    _, paths = tree
    headers = [fits_header(p) for p in paths if not p.name.lower().endswith((".tif", ".tiff"))]
    software = {str(h.get("SWCREATE", h.get("CREATOR", ""))).split()[0] for h in headers
                if "SWCREATE" in h or "CREATOR" in h}
    assert len(software) >= 4
    assert any("FRAME" in h for h in headers)
    assert any("OBSTYPE" in h for h in headers)
    assert any("CCDSUM" in h for h in headers) and any("XBINNING" in h for h in headers)
    assert any("EXPOSURE" in h for h in headers) and any("TEMPERAT" in h or "CCDTEMP" in h
                                                         for h in headers)
    values = {str(h["IMAGETYP"]) for h in headers if "IMAGETYP" in h}
    assert values & {"Dark Frame", "Bias Frame", "Flat Field", "Flat Frame", "Light Frame"}
    assert values & {"DARK", "BIAS", "FLAT", "LIGHT"}
    assert values & {"Dark", "Bias", "Flat", "Light"}
    for header in headers:
        assert Time(header["DATE-OBS"], format="isot", scale="utc")


def test_headers_are_missing_or_wrong_as_in_real_archives(plans):
    with_header = [p for p in plans if p.header is not None]
    assert all(p.header is None for p in plans if p.fmt.container == "tiff")
    typed = [p for p in with_header if p.program.name != "firecapture"]
    missing = [p for p in typed if "missing_type" in p.defects]
    assert 0.08 < len(missing) / len(typed) < 0.25
    assert all(not any(k in p.header for k in FRAME_TYPE_KEYS) for p in missing)
    calibration = [p for p in typed if p.kind in ("bias", "dark", "flat", "lampflat")]
    default_light = [p for p in calibration if "default_light" in p.defects]
    assert 0.04 < len(default_light) / len(calibration) < 0.2
    for plan in default_light:
        values = [str(plan.header[k]).lower() for k in FRAME_TYPE_KEYS if k in plan.header]
        assert values and all(v.startswith(("light", "object")) for v in values)
    untyped = [p for p in with_header if not any(k in p.header for k in FRAME_TYPE_KEYS)]
    assert len(untyped) / len(with_header) > 0.15
    defects = Counter(d for p in with_header for d in p.defects)
    for name in ("wrong_type", "lowercase_type", "exptime_text", "exptime_ms",
                 "missing_exptime", "temperature_text", "missing_optics"):
        assert defects[name] > 0, name
    texts = [p.header["EXPTIME"] for p in with_header if "exptime_text" in p.defects
             and "EXPTIME" in p.header]
    assert texts and all(isinstance(t, str) for t in texts)
    assert {p.program.name for p in plans} == set(PROGRAMS)


def test_darks_carry_dark_current_hot_pixels_and_glow_above_bias():
    for name in ("ZWO ASI294MC Pro", "QHY268M", "SBIG ST-8300M", "Canon EOS 600D (modified)"):
        camera = CAMERAS[name]
        rng = np.random.default_rng(1)
        settings = dataclasses.replace(draw_settings(camera, rng, 0.0, shape=(300, 400)),
                                       sensor_temp_c=5.0, binning=1)
        bias = read_out(camera, settings, None, (300, 400), np.random.default_rng(2))
        dark = read_out(camera, dataclasses.replace(settings, exptime_s=600.0), None,
                        (300, 400), np.random.default_rng(3))
        assert np.median(dark) > np.median(bias), name
        noise = np.std(bias)
        hot_bias = np.count_nonzero(bias > np.median(bias) + 8 * noise)
        hot_dark = np.count_nonzero(dark > np.median(dark) + 8 * noise)
        assert hot_dark > hot_bias + 3, name


def test_flats_are_bright_bias_is_not():
    for index in range(3):
        forced = dict(camera="QHY268M", program="nina", family="fits_u16")
        flat = make_frame("flats", 0, index, subtype="panel", **forced)
        bias = make_frame("bias", 0, index, **forced)
        full = flat.plan.full_scale
        assert 0.15 * full < np.median(flat.adu) < 0.7 * full
        assert np.median(bias.adu) < 0.06 * full
        # Vignetting: corners darker than the centre.
        h, w = flat.adu.shape
        centre = np.median(flat.adu[h // 3:2 * h // 3, w // 3:2 * w // 3])
        corners = np.median(np.concatenate([flat.adu[:h // 8, :w // 8].ravel(),
                                            flat.adu[-h // 8:, -w // 8:].ravel()]))
        assert corners < centre


def test_planets_sit_on_a_large_dark_sky():
    for body in ("jupiter", "saturn", "mars"):
        for index in range(2):
            frame = make_frame("planetary", 0, index, subtype=body, family="fits_u16")
            image = frame.adu.astype(float)
            level = np.percentile(image, 99.9)
            dark = np.mean(image < np.median(image) + 0.1 * (level - np.median(image)))
            assert dark > 0.5, (body, index, dark)
            assert level > 0.3 * frame.plan.full_scale


def _profile_contrast(image: np.ndarray, axis: int) -> float:
    """Peak over median of the background-subtracted mean profile along ``axis``."""
    profile = image.mean(axis=axis)
    profile = profile - np.percentile(profile, 5)
    return float(profile.max() / max(np.median(profile), 1e-9))


def test_spectra_have_structure_along_one_axis():
    for index in range(4):
        arc = make_frame("spectrum", 0, index, subtype="arc", family="fits_u16")
        star = make_frame("spectrum", 0, index, subtype="star", family="fits_u16")
        vertical = arc.plan.slit.vertical
        # Arc lines: sharp peaks along the dispersion axis (averaging across the slit).
        assert _profile_contrast(arc.adu[..., :arc.plan.shape[1]], 1 if vertical else 0) > 3
        vertical = star.plan.slit.vertical
        # A stellar trace: a narrow band across the spatial axis.
        assert _profile_contrast(star.adu[..., :star.plan.shape[1]], 0 if vertical else 1) > 3


def test_deep_sky_has_stars_and_sky():
    for index in range(3):
        frame = make_frame("deep_sky", 0, index, family="fits_u16", camera="ZWO ASI2600MM Pro")
        image = frame.adu.astype(float)
        sky = np.median(image)
        noise = 1.4826 * np.median(np.abs(image - sky))
        assert np.count_nonzero(image > sky + 20 * noise) > 20
        assert sky > frame.plan.settings.pedestal_adu


def test_bad_files_fail_to_read_where_intended(tmp_path):
    written = write_bad_files(tmp_path)
    assert set(written) == set(BAD_FILES)
    assert all(is_frame_file(p.name) for p in written.values())
    for kind, path in written.items():
        if kind in UNREADABLE or kind in ("table_only", "header_only"):
            with pytest.raises(Exception):
                read_image(path)
    assert written["empty"].stat().st_size == 0
    with pytest.raises(Exception):
        gzip.decompress(written["broken_gzip"].read_bytes())
    assert np.isnan(read_image(written["all_nan"])).all()
    with fits.open(written["table_only"]) as hdus:
        assert isinstance(hdus[1], fits.BinTableHDU)


def test_bad_files_join_the_tree_when_asked(tree):
    out, paths = tree
    names = {p.name for p in out.rglob("*") if p.is_file()}
    assert set(BAD_FILES.values()) <= names
    assert len(names) == len(paths) + len(BAD_FILES)


def test_unlabeled_tree_is_flat_with_truth_and_differs_from_the_labelled_one(tmp_path, tree):
    paths = write_sample_tree(tmp_path / "night", per_class=2, seed=0, unlabeled=True)
    assert all(p.parent == tmp_path / "night" for p in paths)
    lines = (tmp_path / "night" / LABELS_FILE).read_text().splitlines()
    assert lines[0] == "file,class"
    truth = dict(line.split(",") for line in lines[1:])
    assert set(truth) == {p.name for p in paths}
    assert Counter(truth.values()) == {c: 2 for c in CLASSES}
    labelled = {sha256(p) for p in tree[1]}
    assert not {sha256(p) for p in paths} & labelled


def test_refuses_a_non_empty_folder_unless_overwriting(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SampleExistsError):
        write_sample_tree(tmp_path, per_class=1, classes=["bias"])
    paths = write_sample_tree(tmp_path, per_class=1, classes=["bias"], overwrite=True)
    assert len(paths) == 1 and (tmp_path / "notes.txt").read_text() == "mine"


def test_command_line(tmp_path, capsys):
    from cli.main import main

    out = tmp_path / "s"
    argv = ["sample", str(out), "--per-class", "1", "--seed", "4", "--classes", "bias,darks"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bias", "darks"]
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"skyshard sample: error: {out} is not empty")
    assert main(argv + ["--overwrite", "--bad-files"]) == 0
    with pytest.raises(SystemExit):
        main(["sample", str(out), "--classes", "galaxies"])


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    import cli.sample
    from cli.main import main

    def interrupted(args, extra):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.sample, "run", interrupted)
    assert main(["sample", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("skyshard sample: interrupted; ") and "--overwrite" in err
    assert "Traceback" not in err

    def beam_interrupted(args, extra):  # how Apache Beam re-raises Ctrl-C from a transform
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("KeyboardInterrupt [while running 'Extract/ParDo']") from exc

    monkeypatch.setattr(cli.sample, "run", beam_interrupted)
    assert main(["sample", str(tmp_path / "s")]) == 130

    def failed(args, extra):
        raise RuntimeError("a real failure")

    monkeypatch.setattr(cli.sample, "run", failed)
    with pytest.raises(RuntimeError, match="a real failure"):
        main(["sample", str(tmp_path / "s")])


def test_beams_own_report_of_a_ctrl_c_is_not_logged_twice():
    import logging

    from skyshard.runtime import _drop_interrupt_report

    def record(message, exc=None):
        return logging.LogRecord("apache_beam.runners.common", logging.ERROR, __file__, 1,
                                 message, None, (type(exc), exc, None) if exc else None)

    assert not _drop_interrupt_report(record("KeyboardInterrupt [while running 'Extract']"))
    assert not _drop_interrupt_report(record("error", KeyboardInterrupt()))
    assert _drop_interrupt_report(record("ValueError [while running 'Extract']",
                                         ValueError("x")))


def test_command_module_is_import_light():
    code = ("import sys, cli.sample; "
            "print(any(m in sys.modules for m in ('numpy', 'astropy', 'tensorflow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
