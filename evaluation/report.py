"""``report.html``: one self-contained page an astronomer can open, mail or archive.

In: the evaluation's ``metrics.json`` content, the PNG bytes of its plots and the worst mistakes
(each with its image). Out: an HTML string with every image embedded as a base64 data URI, so
the file needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Sequence

import numpy as np

from evaluation.plots import thumbnail_png

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}
.meta{color:#555;font-size:.9em}.plots img{max-width:100%;margin:.5em 0}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ccc;padding:6px;width:230px;font-size:.8em;word-break:break-all}
.card img{width:224px;height:224px;image-rendering:pixelated;background:#000}
.bad{color:#b00}.good{color:#070}details{margin-top:4px}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_table(metrics: dict) -> str:
    baseline = metrics.get("header_baseline") or {}
    stripped = metrics.get("headers_stripped") or {}
    branches = metrics.get("branches") or {}
    rows = [("header-only baseline (IMAGETYP/OBSTYPE)",
             baseline if baseline.get("available") else None),
            ("model", metrics),
            ("model + trusted headers + rules", metrics.get("with_rules")),
            ("model, every header stripped", stripped if stripped.get("available") else None),
            ("image branch alone", branches.get("image_alone")),
            ("feature branch alone", branches.get("features_alone"))]
    out = ["<table><tr><th class=l>predictor</th><th>accuracy</th><th>macro-F1</th>"
           "<th>coverage</th></tr>"]
    for name, block in rows:
        if block:
            out.append(f"<tr><td class=l>{name}</td><td>{_fmt(block.get('accuracy'))}</td>"
                       f"<td>{_fmt(block.get('macro_f1'))}</td>"
                       f"<td>{_fmt(block.get('coverage'))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _per_class_table(metrics: dict) -> str:
    header = metrics.get("header_baseline") or {}
    baseline = header.get("per_class", {}) if header.get("available") else {}
    ruled = (metrics.get("with_rules") or {}).get("per_class", {})
    out = ["<table><tr><th class=l>class</th><th>support</th><th>precision</th><th>recall</th>"
           "<th>F1</th><th>F1 + rules</th><th>F1 header baseline</th></tr>"]
    for name in metrics["classes"]:
        m = metrics["per_class"][name]
        out.append(
            f"<tr><td class=l>{html.escape(name)}</td><td>{m['support']}</td>"
            f"<td>{_fmt(m['precision'])}</td><td>{_fmt(m['recall'])}</td><td>{_fmt(m['f1'])}</td>"
            f"<td>{_fmt(ruled.get(name, {}).get('f1'))}</td>"
            f"<td>{_fmt(baseline.get(name, {}).get('f1'))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _baseline_section(metrics: dict) -> str:
    block = metrics.get("header_baseline") or {}
    if not block.get("available", True):
        return ("<p>The run's features hold no header frame type (<code>frame_type_*</code>), so "
                "there is no header-only baseline to compare with.</p>")
    vs = block.get("model_vs_baseline", {})
    mapping = ", ".join(f"{html.escape(k)} → {html.escape(v)}"
                        for k, v in block.get("mapping", {}).items())
    return (
        f"<p>Sorting by the header frame type alone ({mapping}; abstaining when the header names "
        f"no type) classifies {_fmt(block.get('coverage'))} of the frames at all and gets "
        f"accuracy {_fmt(block.get('accuracy'))}. The model is right where the headers are "
        f"wrong or silent on <b>{vs.get('only_first', 0)}</b> frames, and wrong where the headers "
        f"are right on <b>{vs.get('only_second', 0)}</b>; both right: {vs.get('both', 0)}, both "
        f"wrong: {vs.get('neither', 0)}.</p>")


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _trust_section(metrics: dict) -> str:
    block = metrics.get("header_trust") or {}
    if not block.get("enabled", False):
        return "<p>Header trust was off: every answer is the model's (and the rules').</p>"
    trusted = (block.get("trusted") or {}).get("types", {})
    types = ", ".join(f"{html.escape(k)} → {html.escape(v)}" for k, v in trusted.items())
    if not block.get("frames"):
        what = types or "no type maps to a class"
        return (f"<p>No frame of this split has a trusted header ({what}: the type card present, "
                "well formed and consistent with the exposure card).</p>")
    verdict = ("<span class=good>not worse than</span>" if block.get(
        "final_not_worse_than_baseline") else "<span class=bad>worse than</span>")
    return (
        f"<p><b>{block['frames']}</b> frames have a trusted header ({types}; the type card "
        "present, well formed and consistent with the exposure card). The header keeps its class "
        "unless the frame looks familiar and the model gives that class less than "
        f"{_fmt(block.get('header_veto'))}; the rules never reject it. Kept "
        f"{block.get('kept', 0)}, overruled {block.get('overruled', 0)} "
        f"({block.get('overruled_rightly', 0)} rightly, {block.get('overruled_wrongly', 0)} "
        f"wrongly). On these frames the final answer is {verdict} the header-only baseline:</p>"
        "<table><tr><th class=l>on frames with a trusted header</th><th>errors</th>"
        "<th>error rate</th></tr>"
        f"<tr><td class=l>model alone</td><td>{block.get('model_errors')}</td>"
        f"<td>{_percent(block.get('model_error_rate'))}</td></tr>"
        f"<tr><td class=l>final answer (header trust + rules)</td>"
        f"<td>{block.get('final_errors')}</td><td>{_percent(block.get('final_error_rate'))}</td>"
        f"</tr><tr><td class=l>header-only baseline</td><td>{block.get('baseline_errors')}</td>"
        f"<td>{_percent(block.get('baseline_error_rate'))}</td></tr></table>")


def _flags_section(metrics: dict) -> str:
    cal = metrics.get("calibration") or {}
    flags = metrics.get("flags") or {}
    if not flags:
        return ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in cal.get("notes", []))
    fitted = "fitted on validation" if cal.get("calibrated") else "not fitted"
    return (
        f"<p>Probabilities are calibrated by temperature scaling (T = "
        f"{_fmt(cal.get('temperature'))}, {fitted}): ECE {_fmt(cal.get('ece'))} "
        f"(uncalibrated {_fmt(cal.get('ece_uncalibrated'))}). An answer resting on the model is "
        f"flagged <i>low confidence</i> below a calibrated probability of "
        f"{_fmt(cal.get('low_confidence_threshold'))} "
        f"({html.escape(str(cal.get('low_confidence_from', '')))}), "
        "and <i>unfamiliar</i> when its out-of-distribution score is above 1 (farther from the "
        "training frames than the chosen share of validation frames).</p>"
        + (f"<ul>{notes}</ul>" if notes else "") +
        "<table><tr><th class=l></th><th>frames</th><th>error rate</th></tr>"
        f"<tr><td class=l>flagged</td><td>{flags.get('flagged')} ({flags.get('low_confidence')} "
        f"low confidence, {flags.get('unfamiliar')} unfamiliar)</td>"
        f"<td>{_percent(flags.get('error_rate_flagged'))}</td></tr>"
        f"<tr><td class=l>not flagged</td><td>{flags.get('frames', 0) - flags.get('flagged', 0)}"
        f"</td><td>{_percent(flags.get('error_rate_unflagged'))}</td></tr></table>"
        f"<p>{_percent(flags.get('errors_flagged'))} of the {flags.get('errors')} wrong answers "
        f"carry a flag, and {_percent(flags.get('correct_flagged'))} of the right ones.</p>")


def _rules_section(metrics: dict) -> str:
    block = metrics.get("with_rules") or {}
    rules = block.get("rules", [])
    if not rules:
        return "<p>No post-processing rules were applied.</p>"
    items = "".join(
        f"<tr><td class=l>{html.escape(r['name'])}</td><td class=l>{html.escape(r['class'])}</td>"
        f"<td class=l>{html.escape(r['feature'])}</td><td>{_fmt(r.get('min'))}</td>"
        f"<td>{_fmt(r.get('max'))}</td><td>{block.get('fired', {}).get(r['name'], 0)}</td>"
        f"<td class=l>{html.escape(r.get('description', ''))}</td></tr>" for r in rules)
    return (
        f"<p>Rules changed <b>{block.get('changed', 0)}</b> predictions: "
        f"<span class=good>{block.get('fixed', 0)} fixed</span>, "
        f"<span class=bad>{block.get('broken', 0)} broken</span>.</p>"
        "<table><tr><th class=l>rule</th><th class=l>class</th><th class=l>feature</th>"
        "<th>min</th><th>max</th><th>changed</th><th class=l>why</th></tr>"
        f"{items}</table>")


def _mistake_card(mistake: dict, classes: Sequence[str], feature_names: Sequence[str]) -> str:
    probs = np.asarray(mistake["probs"], dtype=np.float64)
    top = np.argsort(-probs)[:3]
    top_text = "<br>".join(f"{html.escape(classes[i])}: {probs[i]:.3f}" for i in top)
    features = np.asarray(mistake["features"], dtype=np.float64)
    known = "".join(
        f"<tr><td class=l>{html.escape(name)}</td><td>{features[i]:.4g}</td></tr>"
        for i, name in enumerate(feature_names) if np.isfinite(features[i]))
    rule = (f"<br>rules → <b>{html.escape(mistake['rule_class'])}</b> "
            f"({html.escape(mistake['rule'])})" if mistake.get("rule") else "")
    baseline = mistake.get("baseline_class") or "no frame type"
    flags = ", ".join(mistake.get("flags") or []) or "none"
    score = mistake.get("ood_score")
    score_text = "" if score is None or not math.isfinite(score) else f", ood score {score:.2f}"
    return (
        f"<div class=card><img alt='' src='{_data_uri(thumbnail_png(mistake['image']))}'>"
        f"<div><b>{html.escape(mistake['key'])}</b></div>"
        f"<div>true <b class=good>{html.escape(mistake['true'])}</b>, predicted "
        f"<b class=bad>{html.escape(mistake['predicted'])}</b> ({mistake['confidence']:.3f})"
        f"{rule}</div><div>headers say: {html.escape(baseline)}</div>"
        f"<div>flags: {html.escape(flags)}{score_text}</div>"
        f"<div class=meta>{top_text}</div>"
        f"<details><summary>features (raw)</summary><table>{known}</table></details></div>")


def render_report(metrics: dict, confusion_png: bytes, reliability_png: bytes,
                  mistakes: Sequence[dict], feature_names: Sequence[str]) -> str:
    """The whole page as a string. ``mistakes`` are dicts with ``key``, ``true``, ``predicted``,
    ``confidence``, ``probs``, ``features``, ``image`` and optionally ``rule``, ``rule_class``,
    ``baseline_class``; worst first."""
    classes = metrics["classes"]
    title = f"skyshard evaluation: {html.escape(str(metrics.get('run', '')))}"
    cards = "".join(_mistake_card(m, classes, feature_names) for m in mistakes)
    gallery = (f"<div class=gallery>{cards}</div>" if cards
               else "<p>No misclassified frames.</p>")
    calibration = metrics.get("calibration", {})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_CSS}</style></head><body>
<h1>{title}</h1>
<p class=meta>export {html.escape(str(metrics.get('export', '')))}, split
<b>{html.escape(str(metrics.get('split', '')))}</b>, {metrics['n']} frames,
{len(classes)} classes; evaluated {html.escape(str(metrics.get('created', '')))} in
{_fmt(metrics.get('seconds'), 1)} s, peak RSS {_fmt(metrics.get('peak_rss_mb'), 0)} MB.</p>
<h2>Summary</h2>{_summary_table(metrics)}
<p>Expected calibration error {_fmt(metrics.get('expected_calibration_error'))}
({calibration.get('n_bins', '')} equal-width bins).</p>
<h2>How far to believe it</h2>{_flags_section(metrics)}
<h2>Per class</h2>{_per_class_table(metrics)}
<h2>What the model adds over the headers</h2>{_baseline_section(metrics)}
<h2>Frames whose header states their type</h2>{_trust_section(metrics)}
<h2>Post-processing rules</h2>{_rules_section(metrics)}
<h2>Plots</h2><div class=plots>
<img alt="confusion matrix" src="{_data_uri(confusion_png)}">
<img alt="reliability diagram" src="{_data_uri(reliability_png)}"></div>
<h2>Worst mistakes ({len(mistakes)} most confident wrong predictions)</h2>{gallery}
</body></html>
"""
