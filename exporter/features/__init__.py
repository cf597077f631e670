"""The numbers of a record: what one frame's header and pixels say, as named floats.

:func:`exporter.measure.measure_frame` runs them in this order::

    readers.read_frame -> sensor.recover_adu -> overscan.trim_to_data_section
        -> sampling.FrameSamples -> overscan.overscan_features -> cfa.equalise_cfa
        -> headers.header_features, pixel_stats.pixel_features, sensor.sensor_features,
           domain.domain_features

Feature modules, one group of features each: :mod:`~exporter.features.headers` (the header
group), :mod:`~exporter.features.pixel_stats`, :mod:`~exporter.features.sensor`,
:mod:`~exporter.features.cfa` and :mod:`~exporter.features.overscan` (the pixel group),
:mod:`~exporter.features.domain` (the domain group, assembled from
:mod:`~exporter.features.stars`, :mod:`~exporter.features.spectra`,
:mod:`~exporter.features.disk` and :mod:`~exporter.features.straight_lines`).

What they share: :mod:`~exporter.features.sampling` (the per-frame samples and intermediates,
:class:`~exporter.features.sampling.FrameSamples`), :mod:`~exporter.features.kernels` (image
kernels), :mod:`~exporter.features.counted` (order statistics of integer samples) and
:mod:`~exporter.features.scalars` (the scalar forms of feature values).
"""
