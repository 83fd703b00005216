"""dream_core.cli.checks: the busy-machine notice and what Ctrl-C says about continuing a run."""

import os

import pytest
import torch

from dream_core.cli import build_parser
from dream_core.cli.checks import interrupted_message, warn_if_busy


@pytest.mark.parametrize(
    "load, threads, device, warned",
    [
        (lambda: 2.0, None, "cpu", True),  # other work on the cores: torch's threads would compete with it
        (lambda: 0.1, None, "cpu", False),  # an idle machine
        (lambda: 2.0, 1, "cpu", False),  # --threads given
        (lambda: 2.0, None, "cuda", False),  # a GPU run
        (lambda: None, None, "cpu", False),  # no load average on this system
    ],
)
def test_busy_machine_notice(monkeypatch, caplog, load, threads, device, warned):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert warn_if_busy(threads, device, load=load) is warned
    assert ("Add --threads 1 for this run" in caplog.text) is warned


def test_interrupted_video_says_where_the_work_is_and_how_to_continue(tmp_path):
    argv = ["video", "in clip.mp4", str(tmp_path / "out.mp4"), "--no-resume", "--lr", "0.02"]
    message = interrupted_message(build_parser().parse_args(argv), argv, "python -m dream_core")
    assert f"kept in '{tmp_path / 'out.mp4.dream-work'}'" in message
    assert message.endswith(f"python -m dream_core video 'in clip.mp4' {tmp_path / 'out.mp4'} --lr 0.02")
    image = ["image", "a.png", "b.png"]
    assert interrupted_message(build_parser().parse_args(image), image, "deepdream-video") == "Interrupted."
