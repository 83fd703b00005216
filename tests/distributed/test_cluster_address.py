"""Joining a Ray cluster fails within seconds with our message, and workers get absolute paths (issue 20).

Only loopback addresses; no cluster is started here (Ray's own ``init`` is replaced where a join must fail
in a given way)."""

import logging
import socket
import time

import pytest

from dream_core.cli import main
from dream_core.distributed import runner
from dream_core.errors import ClusterError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def listening():
    """A loopback port where something listens (not a Ray head)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("address", ["not an address", "127.0.0.1", "127.0.0.1:99999", "ray://:10001", "host:port"])
def test_a_malformed_address_is_our_error(address):
    with pytest.raises(ClusterError, match="Cannot read the Ray address.*expected 'host:6379'") as info:
        runner.check_address(address)
    assert info.value.parameter == "ray_address"


def test_an_address_where_nothing_listens_fails_within_seconds(tmp_path, caplog):
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=f"Nothing answers at 127.0.0.1:{port}.*ray start"):
        runner.check_address(f"127.0.0.1:{port}")
    with caplog.at_level(logging.ERROR):  # the command line: before the model is even loaded
        assert main(["video", "in.mp4", str(tmp_path / "o.mp4"), "--workers", "2",
                     "--ray-address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t0 < 15  # was: minutes of Ray's own retries, then the process exited
    assert "Nothing answers" in caplog.text and "Set it with --ray-address" in caplog.text


class _Ray:
    """Ray's ``init`` failing (or waiting) the way a real cluster makes it."""

    def __init__(self, error=None, wait=0.0):
        self.error, self.wait = error, wait

    def init(self, **options):
        time.sleep(self.wait)
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("error, shown", [
    (ConnectionError("Could not find any running Ray instance."), "Could not find any running Ray instance"),
    (SystemExit(15), "Ray gave up waiting for the cluster's head to answer"),
    (RuntimeError("Authentication failed: this cluster requires a token."), "requires a token"),
    (ValueError("Ray Client requires pip package `ray[client]`."), "ray[client]"),
])
def test_every_failure_to_join_is_our_error(listening, error, shown):
    with pytest.raises(ClusterError, match=rf"Could not join the Ray cluster at '{listening}': .*Check the address") as info:
        runner._join(_Ray(error), listening)
    assert shown in str(info.value) and info.value.parameter == "ray_address"


def test_a_slow_join_says_what_it_waits_for(listening, monkeypatch, caplog):
    monkeypatch.setattr(runner, "WAIT_NOTICE", 0.05)
    with caplog.at_level(logging.WARNING):
        runner._join(_Ray(wait=0.3), listening)
    assert f"Still joining the Ray cluster at {listening}" in caplog.text


def test_workers_get_absolute_paths(lite0, tmp_path, monkeypatch):
    """Relative input and mask paths passed the driver's checks and failed on a cluster's workers."""
    from dream_core.cli import distributed
    from dream_core.image_io import save_image
    from conftest import textured_image
    from video_clips import make_clip

    pytest.importorskip("ray")
    make_clip(tmp_path / "in.mp4", n=4, audio=None)
    save_image(textured_image(48, 64), tmp_path / "mask.png")
    seen = {}

    class Captured(Exception):
        pass

    def capture(job, plan, assembler, **options):
        seen["job"] = job
        raise Captured

    monkeypatch.setattr(distributed, "render_segments", capture)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Captured):
        main(["video", "in.mp4", "out.mp4", "--workers", "2", "--mask", "mask.png", "--octaves", "1"])
    job = seen["job"]
    flags = job.plan.args[0]  # what the workers build their plan and masks from
    assert job.source == str(tmp_path / "in.mp4") and flags.mask == str(tmp_path / "mask.png")


def test_batch_tasks_get_absolute_paths(lite0, tmp_path, monkeypatch):
    from dream_core.cli import batch
    from dream_core.image_io import save_image
    from conftest import textured_image

    pytest.importorskip("ray")
    (tmp_path / "in").mkdir()
    save_image(textured_image(48, 64), tmp_path / "in" / "a.png")
    save_image(textured_image(48, 64), tmp_path / "mask.png")
    seen = []
    monkeypatch.setattr(batch, "run_tasks", lambda calls, **options: seen.extend(calls))
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "in", "out", "--mask", "mask.png"]) == 0
    (flags,) = (call.args[0] for call in seen)
    assert (flags.input, flags.output, flags.mask) == tuple(str(tmp_path / p) for p in ("in/a.png", "out/a.png", "mask.png"))
