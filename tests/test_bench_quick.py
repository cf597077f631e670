"""``make bench-quick`` end to end: every measurement runs and writes well-formed results.

Only the structure and the sanity of the figures are checked (present, positive, finite), never
a timing or a target: the machine is shared and the quick sizes are far too small for the
ratios to mean anything. The quick benchmark takes minutes (a camera-size frame included), so
these tests are marked ``bench``: ``make test`` deselects them, ``make bench-test`` runs them.
"""

from __future__ import annotations

import json
import math

import pytest

from bench.run import main

pytestmark = pytest.mark.bench

SECTIONS = ("summary", "export", "pipeline", "memory", "cost")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def quick_results(quick_root):
    root = quick_root
    out, results_md = root / "results", root / "RESULTS.md"
    assert main(["--quick", "--workdir", str(root / "work"), "--out", str(out),
                 "--results-md", str(results_md)]) == 0
    data = {name: json.loads((out / f"{name}.json").read_text()) for name in SECTIONS}
    return data, results_md.read_text()


@pytest.mark.slow
def test_summary_names_the_command_machine_and_targets(quick_results):
    data, _ = quick_results
    summary = data["summary"]
    assert "bench.run --quick" in summary["command"]
    assert summary["plan"]["quick"] is True
    assert summary["machine"]["logical_cpus"] >= 1
    assert positive(summary["total_s"])
    names = [t["target"] for t in summary["targets"]]
    assert any("bare read" in n for n in names) and any("from_generator" in n for n in names)
    assert any(n.startswith("train") for n in names) and any(n.startswith("score") for n in names)
    for t in summary["targets"]:
        assert isinstance(t["met"], bool) and math.isfinite(t["threshold"])


@pytest.mark.slow
def test_export_section_has_every_run_and_rate(quick_results):
    export = quick_results[0]["export"]
    assert set(export["exports"]) == {"N-w1", "8N-w1", "N-w2", "8N-w2"}
    for run in export["exports"].values():
        assert run["records"] == run["frames"] and run["dead_letters"] == 0
        assert positive(run["record_bytes"])
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_uss_mb"):
            assert positive(run["measured"][key]), key
        assert positive(run["self_reported"]["peak_rss_mb"])
    best = export["bare_read"]["best"]
    assert positive(best["frames_per_s"]) and positive(best["mb_per_s"])
    assert positive(export["original_loader"]["frames_per_s"])
    for rate in export["rates"].values():
        assert positive(rate["frames_per_s_gross"]) and positive(rate["cpu_s_per_frame"])
    stages = export["stages"]
    assert {"read", "pixel_features", "domain_features", "preprocess"} <= set(
        stages["cpu_ms_per_frame"])
    assert all(positive(ms) for ms in stages["cpu_ms_per_frame"].values())
    camera = export["camera_size"]
    assert camera["frames"] >= 1 and camera["shape"] == [4176, 6248]
    assert positive(camera["bare_read_cpu_ms"]) and 0 < camera["ratio"] < 1


@pytest.mark.slow
def test_pipeline_section_has_the_three_rates(quick_results):
    pipeline = quick_results[0]["pipeline"]
    for name in ("stream", "from_generator", "model_consumption", "fit_with_stream"):
        assert positive(pipeline[name]["examples_per_s"]), name
        assert pipeline[name]["examples"] > 0
    for ratio in ("stream_over_generator", "stream_over_model", "fit_over_model"):
        assert positive(pipeline[ratio])


@pytest.mark.slow
def test_memory_section_covers_every_command_and_the_fit(quick_results):
    memory = quick_results[0]["memory"]
    expected = {"export (1 worker)", "export (2 workers)", "train", "evaluate", "score",
                "original loader"}
    assert expected <= set(memory["commands"])
    for name in expected:
        for size in ("N", "8N"):
            run = memory["commands"][name][size]
            assert "error" not in run, run.get("error")
            assert positive(run["measured"]["peak_mb"]) and run["frames"] > 0
        growth = memory["growth"][name]
        assert math.isfinite(growth["per_frame_kb"]) and positive(growth["quarter_record_kb"])
    fit = memory["original_loader_fit"]
    assert fit["points"] >= 2 and math.isfinite(fit["intercept_mb"])
    assert positive(memory["record_bytes"])


@pytest.mark.slow
def test_cost_section_has_one_sane_row_per_configuration(quick_results):
    cost = quick_results[0]["cost"]
    assert [(r["model"], r["image_size"]) for r in cost["rows"]] == [("separable", 64)]
    for row in cost["rows"]:
        for key in ("ms_per_step", "ms_per_image", "params", "flops_per_image",
                    "profiler_flops_per_image", "first_step_s"):
            assert positive(row[key]), key
        assert row["steps"] >= 1


@pytest.mark.slow
def test_results_markdown_has_every_table(quick_results):
    _, markdown = quick_results
    assert "bench.run --quick" in markdown
    for heading in ("## Targets", "## 1. Export throughput", "## 2. Input pipeline",
                    "## 3. Peak RSS", "## 4. Training cost"):
        assert heading in markdown
    assert "n/a" not in markdown.split("## 4. Training cost")[1]


@pytest.mark.slow
def test_memory_only_reuses_the_exports_and_rewrites_the_tables(quick_results, quick_root,
                                                                monkeypatch):
    import dataclasses

    import bench.run

    # The 40N runs and the small shuffle budget were exercised by the full quick run above;
    # what is new here is the reuse of its exports, which the default train run shows.
    monkeypatch.setattr(bench.run, "QUICK", dataclasses.replace(
        bench.run.QUICK, memory_warm=False, train_small_buffer=False))
    out, results_md = quick_root / "results", quick_root / "RESULTS.md"
    exports_before = json.loads((out / "export.json").read_text())["exports"]
    assert main(["--quick", "--only", "memory", "--workdir", str(quick_root / "work"),
                 "--out", str(out), "--results-md", str(results_md)]) == 0
    memory = json.loads((out / "memory.json").read_text())
    assert set(memory["run"]["exports_reused"]) == {"N", "8N"}
    assert {"export (1 worker)", "export (2 workers)"} <= set(memory["commands"])
    assert json.loads((out / "export.json").read_text())["exports"] == exports_before
    assert memory["env"]["measured"] == {"MALLOC_ARENA_MAX": "2"}
    for name in ("train", "evaluate", "score"):
        for size in ("N", "8N"):
            run = memory["commands"][name][size]
            assert "error" not in run, run.get("error")
            assert run["measured"]["env"] == {"MALLOC_ARENA_MAX": "2"}
            assert positive(run["measured"]["peak_mb"])
        growth = memory["growth"][name]
        assert growth["verdict"] in {"flat", "grows", "unresolved"}
        low, high = growth["spread_kb"]
        assert low <= growth["per_frame_kb"] <= high
    markdown = results_md.read_text()
    assert "measured on its own by" in markdown and "## 1. Export throughput" in markdown


@pytest.mark.slow
def test_export_alone_renders_its_own_tables(quick_results):
    from bench.export_bench import export_targets
    from bench.report import export_only_markdown

    export = dict(quick_results[0]["export"])
    export["run"] = {"command": "python -m bench.run --only export", "date": "2026-01-01",
                     "seconds": 60.0, "loadavg_start": [1.0], "loadavg_end": [2.0]}
    markdown = export_only_markdown(export, export_targets(export))
    assert "## Targets" in markdown and "bare read-and-decode" in markdown
    assert "measured on its own by `python -m bench.run --only export`" in markdown
    assert "## 3. Peak RSS" not in markdown
