"""Deterministic export: the same input and options give the same records (same bytes, hence
the same split and fold), the same dead letters and the same counts and scaler, whatever the
DirectRunner mode, the worker count, and whether frames are read in-process or in the reader's
helper processes. (The portable runner is compared in ``test_export.py``.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from export_helpers import read_export

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")]

MODES = {
    "multi_threading, 2 workers": ["--direct_running_mode=multi_threading",
                                   "--direct_num_workers=2"],
    "multi_processing, 2 workers": ["--direct_running_mode=multi_processing",
                                    "--direct_num_workers=2"],
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from sample import write_bad_files, write_sample_tree

    root = tmp_path_factory.mktemp("determinism")
    write_sample_tree(root, per_class=2, seed=41)
    write_bad_files(root / "darks" / "broken")
    return root


def export(tree, out, beam_args=(), file_timeout=120.0):
    from exporter.export import run_export
    from exporter.spec import ExportSpec

    spec = ExportSpec(classes=[], image_size=32, folds=3, file_timeout=file_timeout)
    return run_export(tree, out, spec=spec, beam_args=list(beam_args), command="pytest")


def letters(out) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "traceback"}
            for line in (out / "errors.jsonl").read_text().splitlines()]


def test_records_letters_and_scaler_do_not_depend_on_the_runner_mode(tree, tmp_path):
    reference = export(tree, tmp_path / "in-process", file_timeout=0)
    expected = read_export(reference.out_dir)
    assert len(expected) == 12 and letters(reference.out_dir)
    for name, args in MODES.items():
        result = export(tree, tmp_path / name.replace(", ", "-").replace(" ", "_"), args)
        records = read_export(result.out_dir)
        assert sorted(records) == sorted(expected), name
        for key, record in expected.items():
            assert records[key]["_bytes"] == record["_bytes"], (name, key)
        assert letters(result.out_dir) == letters(reference.out_dir), name
        for split, info in reference.manifest.splits.items():
            other = result.manifest.splits[split]
            assert (other.count, other.counts_per_class) == \
                (info.count, info.counts_per_class), (name, split)
        for field in ("mean", "scale", "var", "n_samples"):
            np.testing.assert_array_equal(getattr(result.manifest.scaler, field),
                                          getattr(reference.manifest.scaler, field),
                                          err_msg=name)
