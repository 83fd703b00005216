"""A segment of a distributed run ranks its ranked picks on the run's first frame, like the one-worker run."""

import io
from fractions import Fraction

import av
import numpy as np

from conftest import multiscale_texture
from dream_core import DreamSettings
from dream_core.distributed.job import SegmentJob, dream_segment
from dream_core.distributed.segments import plan_segments
from dream_core.image_io import to_uint8_hwc
from dream_core.video import VideoWriter
from dream_core.clip import VideoSettings

RATE = Fraction(24)
N = 6


def body_frames(result) -> np.ndarray:
    with av.open(io.BytesIO(result.body)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_a_mid_clip_segment_dreams_the_first_frames_channels(tmp_path):
    path = tmp_path / "cuts.mp4"
    with VideoWriter(path, RATE, crf=0, resume=False) as writer:  # unrelated pictures: each ranks differently
        for t in range(N):
            writer.write(to_uint8_hwc(multiscale_texture(48, 64, seed=20 + t)))
    job = SegmentJob(source=str(path), rate=RATE, first_frame=0, max_side=None, model="efficientnet_lite0",
                     weights=None, objective="block10_dw:strong4", device="cpu", crf=0,
                     settings=DreamSettings(num_octaves=1, num_iterations=2), video=VideoSettings(mode="independent"))
    whole = body_frames(dream_segment(job, plan_segments(range(N), N, 0, 0)[0]))
    second = plan_segments(range(N), 3, 0, 0)[1]
    assert second.dream.start == 3
    alone = body_frames(dream_segment(job, second))
    np.testing.assert_array_equal(alone, whole[3:])
