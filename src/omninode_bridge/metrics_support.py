"""Prometheus metrics declared once, as class attributes, and created per instance.

A :class:`MetricSet` subclass lists its metrics as :func:`counter`,
:func:`gauge` and :func:`histogram` class attributes. Each instance creates
every one of them on its own registry, in declaration order, so two instances
on two registries never collide, and removes them again with
:meth:`MetricSet.unregister`. Label values named in ``known`` are created with
the metric, so dashboards see zeros rather than gaps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MetricSet", "MetricSpec", "counter", "gauge", "histogram"]

M = TypeVar("M", Counter, Gauge, Histogram)


class MetricSpec(Generic[M]):
    """One metric of a :class:`MetricSet`; on an instance, the attribute is the metric itself."""

    def __init__(
        self,
        kind: type[M],
        name: str,
        documentation: str,
        labels: Sequence[str],
        known: Sequence[str],
        options: dict[str, Any],
    ) -> None:
        if known and len(labels) != 1:
            raise ValueError(f"{name}: known label values need exactly one label")
        self.kind: type[M] = kind
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.known = tuple(known)
        self.options = options
        self.attribute = name

    def __set_name__(self, owner: type[MetricSet], attribute: str) -> None:
        self.attribute = attribute

    @overload
    def __get__(self, instance: None, owner: type[MetricSet]) -> MetricSpec[M]: ...

    @overload
    def __get__(self, instance: MetricSet, owner: type[MetricSet]) -> M: ...

    def __get__(self, instance: MetricSet | None, owner: type[MetricSet]) -> MetricSpec[M] | M:
        # An instance keeps its metric in its __dict__, which shadows this
        # (non-data) descriptor: only class-level access gets here in practice.
        if instance is None:
            return self
        metric: M = instance.__dict__[self.attribute]
        return metric

    def create(self, registry: CollectorRegistry) -> M:
        """The metric, registered on ``registry``, with its known label values."""
        metric: M = self.kind(
            self.name, self.documentation, self.labels, registry=registry, **self.options
        )
        for value in self.known:
            metric.labels(value)
        return metric


def counter(
    name: str, documentation: str, labels: Sequence[str] = (), *, known: Sequence[str] = ()
) -> MetricSpec[Counter]:
    """A counter of a :class:`MetricSet`; ``known``: values of its one label to create at once."""
    return MetricSpec(Counter, name, documentation, labels, known, {})


def gauge(
    name: str, documentation: str, labels: Sequence[str] = (), *, known: Sequence[str] = ()
) -> MetricSpec[Gauge]:
    """A gauge of a :class:`MetricSet`; ``known``: values of its one label to create at once."""
    return MetricSpec(Gauge, name, documentation, labels, known, {})


def histogram(
    name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
) -> MetricSpec[Histogram]:
    """A histogram of a :class:`MetricSet` with these bucket upper bounds."""
    return MetricSpec(Histogram, name, documentation, labels, (), {"buckets": buckets})


class MetricSet:
    """Base of a class whose metrics are :class:`MetricSpec` class attributes.

    ``registry`` defaults to a fresh private one.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        for spec in self._specs():
            self.__dict__[spec.attribute] = spec.create(self.registry)

    @classmethod
    def _specs(cls) -> Iterator[MetricSpec[Any]]:
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                if isinstance(value, MetricSpec):
                    yield value

    def unregister(self) -> None:
        """Remove these metrics from the registry (a server app restarting its lifespan)."""
        for spec in self._specs():
            self.registry.unregister(self.__dict__[spec.attribute])
