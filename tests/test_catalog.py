"""dream_core.catalog: layer lists with channel counts, built once per model on the meta device, thread-safe."""

from __future__ import annotations

import threading
import time

import pytest

import dream_core.catalog as catalog
from dream_core.errors import UnknownModelError


def test_counts_come_from_the_meta_device_without_weights(monkeypatch):
    devices = []
    real = catalog.DreamModel

    def spy(spec, net, source):
        devices.append(next(net.parameters()).device.type)
        return real(spec, net, source)

    monkeypatch.setattr(catalog, "DreamModel", spy)
    counts = catalog._channel_counts("vgg19")  # 548 MB of weights when built for real
    assert devices == ["meta"] and counts["relu5_4"] == 512 and counts["relu1_1"] == 64


def test_concurrent_first_requests_build_once(monkeypatch):
    # Six browser tabs asking for one model's layers at once: one build (was six, 0.56 -> 4 GB).
    monkeypatch.setattr(catalog, "_CATALOGS", {})
    builds = []
    real = catalog._build_catalog

    def slow_build(name):
        builds.append(name)
        time.sleep(0.2)
        return real(name)

    monkeypatch.setattr(catalog, "_build_catalog", slow_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(catalog.layer_catalog("googlenet"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert builds == ["googlenet"] and len(results) == 6 and all(r is results[0] for r in results)
    with pytest.raises(UnknownModelError):
        catalog.layer_catalog("no_such_model")
