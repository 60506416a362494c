"""MetricSet: metrics declared as class attributes, created per instance on its registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from omninode_bridge.metrics_support import MetricSet, MetricSpec, counter, gauge, histogram


class Sample(MetricSet):
    hits = counter("sample_hits_total", "Hits by result.", ["result"], known=("ok", "error"))
    level = gauge("sample_level", "A level.")
    latency = histogram("sample_latency_seconds", "A latency.", buckets=(0.1, 1.0))


def test_each_instance_creates_its_metrics_on_its_registry() -> None:
    first, second = Sample(), Sample()
    assert isinstance(first.hits, Counter)
    assert isinstance(first.level, Gauge)
    assert isinstance(first.latency, Histogram)
    assert first.hits is not second.hits
    first.level.set(3)
    assert first.registry.get_sample_value("sample_level") == 3
    assert second.registry.get_sample_value("sample_level") == 0
    assert isinstance(Sample.hits, MetricSpec)


def test_known_label_values_exist_from_the_start() -> None:
    metrics = Sample()
    for result in ("ok", "error"):
        assert metrics.registry.get_sample_value("sample_hits_total", {"result": result}) == 0


def test_histogram_buckets() -> None:
    metrics = Sample()
    metrics.latency.observe(0.5)
    bucket = metrics.registry.get_sample_value("sample_latency_seconds_bucket", {"le": "1.0"})
    assert bucket == 1
    assert metrics.registry.get_sample_value("sample_latency_seconds_bucket", {"le": "0.1"}) == 0


def test_unregister_lets_a_new_set_register_again() -> None:
    registry = CollectorRegistry()
    metrics = Sample(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Sample(registry)
    metrics.unregister()
    again = Sample(registry)
    assert registry.get_sample_value("sample_level") == 0
    again.unregister()
    assert registry.get_sample_value("sample_level") is None


def test_known_values_need_exactly_one_label() -> None:
    with pytest.raises(ValueError, match="exactly one label"):
        counter("bad_total", "Bad.", ["a", "b"], known=("x",))
