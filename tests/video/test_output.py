"""Output checks (dream_core.video.output): refused before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dream_core import video as vio
from dream_core.errors import InvalidParameterError, VideoError
from video_clips import NTSC


def test_output_checks_happen_before_any_work(clip, tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        vio.check_output_writable(tmp_path / "no" / "such" / "dir" / "out.mp4")
    with pytest.raises(InvalidParameterError, match="input"):
        vio.VideoWriter(clip, NTSC, source=clip)
    with pytest.raises(InvalidParameterError, match="extension"):
        vio.check_output_writable(tmp_path / "out.gif")
    with pytest.raises(VideoError, match="folder"):
        vio.check_output_writable(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(VideoError, match="does not exist"):
        vio.VideoWriter(blocker / "out.mp4", NTSC, source=clip)


def test_unwritable_folder_is_refused_before_any_work(clip, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # root ignores permission bits; /proc refuses new files even to root
        folder = locked if not os.access(locked, os.W_OK) else Path("/proc")
        if not folder.is_dir():
            pytest.skip("no unwritable folder available")
        with pytest.raises(VideoError, match="not writable"):
            vio.VideoWriter(folder / "out.mp4", NTSC, source=clip)
        assert not (folder / "out.mp4.dream-work").exists()
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
