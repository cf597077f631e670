"""The export on Beam's portable runner with EXTERNAL workers: separate worker processes on
loopback, started by a worker pool (``worker_pool_main``) through skyshard's worker boot
program, sharing nothing with the launcher but the object store (moto's S3 server on
127.0.0.1). This is the protocol and the isolation of Flink, Spark and Dataflow workers; the
records must be those of the local export."""

from __future__ import annotations

import pytest

from cli.main import main
from bench.object_store import BUCKET, export_contents, s3_server, upload_tree, worker_pool

pytestmark = pytest.mark.slow


def test_export_with_external_workers_on_s3_is_the_local_export(tmp_path, capsys):
    from sample import write_sample_tree

    frames = tmp_path / "frames"
    write_sample_tree(frames, per_class=2, seed=8, classes=["bias", "flats", "spectrum"])
    assert main(["export", str(frames), str(tmp_path / "local"), "--image-size", "32"]) == 0
    with s3_server(tmp_path) as _, worker_pool(tmp_path) as pool:
        upload_tree(frames, f"s3://{BUCKET}/frames")
        out = f"s3://{BUCKET}/export"
        assert main(["export", f"s3://{BUCKET}/frames", out, "--image-size", "32",
                     "--runner=PortableRunner", "--job_endpoint=embed",
                     "--environment_type=EXTERNAL", f"--environment_config={pool}"]) == 0
        remote = export_contents(out)
        from skyshard.manifest import Manifest

        assert Manifest.read(out).beam_runner == "PortableRunner"
        started = (tmp_path / "worker-pool.log").read_text().count("Starting worker with command")
        # The local runner with the pool's workers: --direct_num_workers of them, each a
        # process of its own (the embedded job service above starts one, whatever it is told).
        two = f"s3://{BUCKET}/export-2"
        assert main(["export", f"s3://{BUCKET}/frames", two, "--image-size", "32",
                     "--environment_type=EXTERNAL", f"--environment_config={pool}",
                     "--direct_num_workers=2"]) == 0
        two_workers = export_contents(two)
    local = export_contents(tmp_path / "local")
    assert local["records"] and remote == local
    # Two workers cut the bundles differently, so the records fall into other shard files:
    # every record, the split, the scaler and the counts are the same.
    assert {k: v for k, v in two_workers.items() if k != "shards"} == {
        k: v for k, v in local.items() if k != "shards"}
    # The work ran in the pool's worker processes, not in the launcher: one for the portable
    # job, then two more.
    log = (tmp_path / "worker-pool.log").read_text()
    assert started >= 1 and log.count("Starting worker with command") >= started + 2
    capsys.readouterr()
