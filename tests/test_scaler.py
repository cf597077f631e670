"""The streaming, NaN-aware scaler equals scikit-learn's StandardScaler."""

import numpy as np
from sklearn.preprocessing import StandardScaler

from exporter.scaler import ScalerCombineFn


def test_combine_equals_sklearn_with_nans_and_partitions():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, size=(301, 4)) * [1, 100, 0.01, 1]
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = 7.0  # constant column: scale 1
    fn = ScalerCombineFn(4)
    parts = [x[:100], x[100:101], x[101:]]
    accumulators = []
    for part in parts:
        acc = fn.create_accumulator()
        for row in part:
            acc = fn.add_input(acc, row)
        accumulators.append(acc)
    out = fn.extract_output(fn.merge_accumulators(accumulators))
    ref = StandardScaler().fit(x)
    np.testing.assert_allclose(out["mean"], ref.mean_, rtol=1e-10)
    np.testing.assert_allclose(out["var"], ref.var_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["scale"], ref.scale_, rtol=1e-9)
    assert out["n_samples"] == np.sum(np.isfinite(x), axis=0).tolist()


def test_all_nan_feature_gives_identity_scaling():
    fn = ScalerCombineFn(2)
    acc = fn.create_accumulator()
    for row in ([np.nan, 1.0], [np.nan, 3.0]):
        acc = fn.add_input(acc, row)
    out = fn.extract_output(fn.merge_accumulators([acc]))
    assert out["mean"][0] == 0.0 and out["scale"][0] == 1.0 and out["n_samples"][0] == 0
    assert out["mean"][1] == 2.0
