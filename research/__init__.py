"""Research tools around skyshard, each run as ``python -m research.MODULE``: the accuracy
ablation, feature classifiers and branch diagnostics, reader fuzzing, and one-off cost and
memory probes. They may use bench/'s measuring helpers; the ``make bench`` harness never imports
them."""
