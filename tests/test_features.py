"""dream_core.features: hooks are held per model, so dreams from several threads with one model stay apart."""

from __future__ import annotations

import threading

import torch

from conftest import textured_image
from dream_core import DreamSettings, count_hooks, dream_image
from dream_core.features import FeatureHooks, model_lock

SETTINGS = DreamSettings(num_octaves=2, num_iterations=6, jitter=4)


def test_two_threads_dreaming_with_one_model_get_their_own_results(tiny_model):
    images = [textured_image(96, 128, seed=s) for s in (1, 2)]
    expected = [dream_image(tiny_model, image, "conv2", SETTINGS) for image in images]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(k: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[k] = dream_image(tiny_model, images[k], "conv2", SETTINGS)
                assert torch.equal(results[k], expected[k])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(torch.equal(results[k], expected[k]) for k in (0, 1))
    assert count_hooks(tiny_model) == 0


def test_the_model_is_free_again_after_an_error_and_reentrant_in_one_thread(tiny_model):
    try:
        with FeatureHooks(tiny_model, ["conv2"]):
            with FeatureHooks(tiny_model, ["conv3"]):  # a guide's features read inside a dream
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    free = []

    def other_thread() -> None:
        lock = model_lock(tiny_model)
        free.append(lock.acquire(timeout=5))
        if free[-1]:
            lock.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert free == [True] and count_hooks(tiny_model) == 0
