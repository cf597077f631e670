"""Hostile and broken input, and nothing the user gave is changed.

Symlink loops, FIFOs and unreadable files or folders are dead letters (or cut once by
discovery), never a hang; an export opens its inputs read-only and writes only under OUT (checked
with Python audit hooks on every ``open``/``mmap`` of a real export); header strings that look
like paths or code stay data; product code has no pickle and no unsafe model loading.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from export_helpers import export_tree, read_export
from skyshard.files import sha256_file

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("skyshard", "exporter", "trainer", "evaluation")
NOBODY = 65534


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so no ``except Exception`` can swallow it."""


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging: SIGALRM interrupts the test's Python code after ``seconds``."""
    def expire(signum, frame):
        raise Hang(f"did not finish within {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from sample import write_sample_tree

    root = tmp_path_factory.mktemp("inputs-sample")
    write_sample_tree(root, per_class=1, seed=21)
    return root


def letters_of(out_dir: Path) -> dict[str, dict]:
    lines = (out_dir / "errors.jsonl").read_text().splitlines()
    return {json.loads(line)["key"]: json.loads(line) for line in lines}


def state(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: content hash, mtime and mode for files, link targets."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif path.is_file():
            status = path.stat()
            out[key] = (sha256_file(path), status.st_mtime_ns, status.st_mode)
    return out


# ---------------------------------------------------------------- symlink loops, FIFOs, dirs


def test_symlink_loops_and_special_files_are_dead_letters_not_hangs(sample, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(sample, tree)
    bias = tree / "bias"
    (bias / "loop").symlink_to(".")                     # folder loop onto itself
    (bias / "up").symlink_to("..")                      # folder loop onto the root
    (bias / "a.fits").symlink_to("b.fits")              # file loop
    (bias / "b.fits").symlink_to("a.fits")
    (bias / "self.fit").symlink_to("self.fit")
    (bias / "dangling.fits").symlink_to(tmp_path / "nowhere.fits")
    os.mkfifo(bias / "pipe.fits")                       # would block an open() forever
    (bias / "folder.fits").mkdir()                      # a folder named like a frame
    with deadline(180):
        result = export_tree(tree, tmp_path / "out")
    records, letters = read_export(result.out_dir), letters_of(result.out_dir)
    originals = {p.relative_to(sample).as_posix() for p in sample.rglob("*") if p.is_file()}
    assert set(records) == originals, "a frame was lost or read twice through a loop"
    for name in ("a.fits", "b.fits", "self.fit", "dangling.fits", "pipe.fits"):
        letter = letters[f"bias/{name}"]
        assert letter["stage"] == "read" and letter["message"], letter
    assert "symbolic links" in letters["bias/self.fit"]["message"]
    assert "regular file" in letters["bias/pipe.fits"]["message"]
    assert len(letters) == 5


# ------------------------------------------------------------------------- unreadable input

UNREADABLE_SCRIPT = r"""
import json, os, sys
from exporter.discovery import discover
from exporter.extract import extract
from exporter.spec import ExportSpec
from exporter.frame import FrameError

root, classes = sys.argv[1], sys.argv[2].split(",")
spec = ExportSpec(classes=classes, image_size=32, file_timeout=0)

def run():
    refs, rejected = discover(root)
    outcomes = {}
    for ref in refs:
        try:
            extract(ref, spec)
            outcomes[ref.key] = ["record", ""]
        except FrameError as exc:
            outcomes[ref.key] = [exc.stage, str(exc)]
    return outcomes, {r.key: r.message for r in rejected}

run()  # as root first: every lazy import done while the interpreter's files are readable
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(%(uid)d)
    os.setuid(%(uid)d)
outcomes, rejected = run()
print(json.dumps({"uid": os.geteuid(), "outcomes": outcomes, "rejected": rejected}))
""" % {"uid": NOBODY}


@pytest.fixture
def public_tmp():
    """A scratch folder other users can traverse (pytest's own tmp folders are private)."""
    folder = Path(tempfile.mkdtemp(prefix="skyshard-perm-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def test_unreadable_files_and_folders_are_dead_letters(sample, public_tmp):
    """Unreadable input must fail with the kernel's own EACCES. The tests run as root, whom
    permission bits do not stop, so the reads run in a subprocess that drops to uid ``nobody``
    (after importing everything while still root); patching ``open`` instead would only test
    our exception mapping, not what the readers meet on disk."""
    import tifffile

    tree = public_tmp / "tree"
    shutil.copytree(sample / "bias", tree / "bias")
    (tree / "planetary").mkdir()
    tifffile.imwrite(tree / "planetary" / "open.tif", np.arange(1200, dtype=np.uint16)
                     .reshape(30, 40) % 997)
    readable = sorted((tree / "bias").iterdir()) + [tree / "planetary" / "open.tif"]
    secret_fits = tree / "bias" / "secret.fits"
    shutil.copy(readable[0], secret_fits)
    secret_tif = tree / "planetary" / "secret.tif"
    shutil.copy(tree / "planetary" / "open.tif", secret_tif)
    locked = tree / "bias" / "locked"
    locked.mkdir()
    shutil.copy(readable[0], locked / "hidden.fits")
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    secret_fits.chmod(0)
    secret_tif.chmod(0)
    locked.chmod(0)
    proc = subprocess.run([sys.executable, "-c", UNREADABLE_SCRIPT, str(tree),
                           "bias,planetary"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["uid"] != 0
    outcomes = result["outcomes"]
    for path in readable:
        assert outcomes[path.relative_to(tree).as_posix()][0] == "record", path
    for key in ("bias/secret.fits", "planetary/secret.tif"):
        stage, message = outcomes[key]
        assert stage == "read" and "Permission denied" in message, (key, message)
    assert "Permission denied" in result["rejected"]["bias/locked"]
    assert "bias/locked/hidden.fits" not in outcomes


# --------------------------------------------------------------- nothing the user gave changes

AUDIT_SCRIPT = r"""
import json, os, sys
out_dir, input_dir, marker = sys.argv[1:4]
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
seen = {"writes": [], "input_opens": 0, "input_writes": [], "mmap_access": [], "spawned": [],
        "code": []}

def hook(event, args):
    if event == "open" and not isinstance(args[0], int):
        path, mode, flags = os.path.abspath(os.fsdecode(args[0])), args[1], args[2] or 0
        writes = bool(flags & WRITE) or any(c in str(mode or "") for c in "wax+")
        if path.startswith(input_dir + os.sep):
            seen["input_opens"] += 1
            if writes:
                seen["input_writes"].append(path)
        elif writes:
            seen["writes"].append(path)
    elif event == "mmap.__new__":
        seen["mmap_access"].append(args[2])
    elif event in ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen"):
        seen["spawned"].append(repr(args)[:300])
    elif event in ("compile", "exec") and marker in repr(args):
        seen["code"].append(repr(args)[:300])

sys.addaudithook(hook)
from exporter.export import run_export
from exporter.spec import ExportSpec
run_export(input_dir, out_dir, spec=ExportSpec(classes=[], image_size=32, folds=3,
                                               file_timeout=0), command="audit")
print(json.dumps(seen))
"""

MARKER = "skyshard_pwned"


def hostile_frames(folder: Path) -> dict[str, str]:
    """Frames whose header strings look like paths, shell and Python code; name -> string."""
    from astropy.io import fits
    import tifffile

    folder.mkdir(parents=True)
    strings = {
        "OBJECT": "../../../../etc/passwd",
        "FILTER": f'__import__("os").system("touch /tmp/{MARKER}")',
        "IMAGETYP": f"$(touch {MARKER}); `touch {MARKER}`",
        "INSTRUME": f"/tmp/{MARKER}/../../../x",
    }
    data = (1000 + np.random.default_rng(0).normal(0, 5, (40, 60))).astype(np.uint16)
    fits.PrimaryHDU(data, fits.Header(list(strings.items()))).writeto(folder / "hostile.fits")
    tifffile.imwrite(folder / "hostile.tif", data, description=strings["FILTER"])
    return strings


def test_export_reads_inputs_read_only_and_writes_only_under_out(sample, tmp_path):
    """A real export under Python audit hooks: inputs opened read-only (and mapped read-only or
    copy-on-write), every written file under OUT or Beam's scratch in TMPDIR, no process spawned
    from header text, no header text compiled; afterwards every input is byte-identical with the
    same mtime and mode, and nothing named by a header exists anywhere."""
    tree = tmp_path / "tree"
    shutil.copytree(sample, tree)
    strings = hostile_frames(tree / "deep_sky" / "odd")
    from sample import write_bad_files
    write_bad_files(tree / "flats" / "broken")
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    out = tmp_path / "out"
    before = state(tree)
    proc = subprocess.run([sys.executable, "-c", AUDIT_SCRIPT, str(out), str(tree), MARKER],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["input_opens"] > 0 and seen["input_writes"] == []
    outside = [p for p in seen["writes"]
               if not (p.startswith(str(out) + os.sep) or p.startswith(str(scratch) + os.sep))]
    assert outside == []
    assert 2 not in seen["mmap_access"]  # mmap.ACCESS_WRITE
    assert seen["spawned"] == [] and seen["code"] == []
    assert state(tree) == before
    assert not list(Path("/tmp").glob(f"{MARKER}*")) and not list(tmp_path.rglob(f"*{MARKER}*"))
    records = read_export(out)
    assert {"deep_sky/odd/hostile.fits", "deep_sky/odd/hostile.tif"} <= set(records)
    assert strings["OBJECT"] not in {p.name for p in out.rglob("*")}


def test_out_inside_input_is_refused_and_nothing_is_touched(sample, tmp_path):
    from exporter.export import ExportError

    tree = tmp_path / "tree"
    shutil.copytree(sample, tree)
    before = state(tree)
    for out in (tree, tree / "export", tree / "bias" / "export"):
        with pytest.raises(ExportError, match="inside INPUT"):
            export_tree(tree, out)
    with pytest.raises(ExportError, match="INPUT must not be inside OUT"):
        export_tree(tree / "bias", tree)
    assert state(tree) == before


# ------------------------------------------------------------------------------ safe artefacts

UNSAFE = {
    "pickle": r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b"
              r"|\b(c?pickle|dill|cloudpickle|joblib|marshal)\.(loads?|dumps?)\(",
    "unsafe model loading": r"safe_mode\s*=\s*False|allow_pickle\s*=\s*True",
    "eval of text": r"(?<![\w.])(eval|exec)\(",
    "unsafe yaml": r"yaml\.(load|unsafe_load)\(",
}


def product_sources() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (REPO / package).rglob("*.py"))


def test_product_code_has_no_pickle_and_no_unsafe_loading():
    found = []
    for path in product_sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in UNSAFE.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert found == []


def test_every_keras_model_load_is_safe_mode():
    """Each ``load_model(`` call in product code passes ``safe_mode=True``."""
    calls = []
    for path in product_sources():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(keras\.)?(saving|models)\.load_model\(", text):
            call = text[match.start():text.find(")", match.end()) + 1]
            calls.append((f"{path.relative_to(REPO)}", call))
    assert calls, "no model loading found: update this test"
    assert all("safe_mode=True" in call for _, call in calls), calls


# ------------------------------------------------------------------------- other files in the tree

def test_unread_astronomical_formats_are_dead_letters_and_other_files_are_counted(tmp_path,
                                                                                   caplog):
    import logging

    from exporter.discovery import discover

    lights = tmp_path / "deep_sky"
    lights.mkdir()
    (lights / "M31_0001.fits").write_bytes(b"")
    for name in ("M31_0002.xisf", "jupiter.SER", "IMG_0042.CR2", "m31.fits.xz"):
        (lights / name).write_bytes(b"\0" * 16)
    for name in ("M31_0001.jpg", "session.log", "notes"):
        (lights / name).write_text("not a frame")
    with caplog.at_level(logging.INFO, logger="exporter.discovery"):
        frames, rejected = discover(tmp_path)
    assert [f.key for f in frames] == ["deep_sky/M31_0001.fits"]
    letters = {r.key: r.dead_letter() for r in rejected}
    assert sorted(letters) == ["deep_sky/IMG_0042.CR2", "deep_sky/M31_0002.xisf",
                               "deep_sky/jupiter.SER", "deep_sky/m31.fits.xz"]
    assert "XISF" in letters["deep_sky/M31_0002.xisf"]["message"]
    assert "SER video" in letters["deep_sky/jupiter.SER"]["message"]
    for letter in letters.values():
        assert letter["stage"] == "discover" and "FITS and TIFF" in letter["message"]
    # Previews, logs and notes are not frames: named once in the log, not dead letters.
    assert "ignored 3 file(s) that are not frames" in caplog.text
    assert ".jpg" in caplog.text and "(no extension)" in caplog.text
    unlabelled, rejected_unlabelled = discover(tmp_path, labelled=False)
    assert len(unlabelled) == 1 and len(rejected_unlabelled) == 4
