"""Measurements of skyshard: `python -m bench.run` (make bench) writes bench/results/ and
bench/RESULTS.md; see bench/run.py for the four measurements and their modules."""
