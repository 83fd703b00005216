"""A segment dreamed on its own (dream_core.distributed.job): seeded by frame, so a redone segment is identical."""

import av
import torch
import io
from fractions import Fraction

import numpy as np
import pytest

from conftest import textured_image
from dream_core import DreamSettings
from dream_core.distributed.job import SegmentJob, dream_segment
from dream_core.distributed.segments import plan_segments
from dream_core.image_io import to_uint8_hwc
from dream_core.video import VideoWriter
from dream_core.clip import VideoSettings

RATE = Fraction(24)
N = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A lossless panning clip of N frames, 64x48."""
    wide = textured_image(48, 64 + 3 * N, seed=3)
    path = tmp_path_factory.mktemp("clip") / "pan.mp4"
    with VideoWriter(path, RATE, crf=0, resume=False) as writer:
        for t in range(N):
            writer.write(to_uint8_hwc(wide[0, :, :, 3 * t: 3 * t + 64]))
    return path


def job(clip, mode: str) -> SegmentJob:
    # jitter on: the random rolls are what a per-run generator would get wrong
    return SegmentJob(source=str(clip), rate=RATE, first_frame=0, max_side=None, model="efficientnet_lite0",
                      weights=None, objective=None, device="cpu", crf=0,
                      settings=DreamSettings(num_octaves=1, num_iterations=2, jitter=4),
                      video=VideoSettings(mode=mode))


def frames_of(result) -> dict[str, np.ndarray]:
    with av.open(io.BytesIO(result.body)) as container:
        body = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return {"body": body, "blend_in": result.blend_in, "blend_out": result.blend_out}


def test_a_segment_alone_equals_the_unbroken_run_when_nothing_is_carried(clip):
    """Mode independent carries nothing: any randomness tied to where a run starts would show here."""
    whole = dream_segment(job(clip, "independent"), plan_segments(range(N), N, 0, 0)[0])
    second = plan_segments(range(N), 4, 0, 0)[1]
    alone = dream_segment(job(clip, "independent"), second)
    assert alone.body_frames == len(second.body) == 4
    np.testing.assert_array_equal(frames_of(alone)["body"], frames_of(whole)["body"][4:])


def test_a_redone_segment_gives_the_same_frames(clip):
    seg = plan_segments(range(N), 4, 3, 2)[1]
    assert (seg.dream, seg.blend_in) == (range(1, 8), range(2, 4))
    first, again = (frames_of(dream_segment(job(clip, "stable"), seg)) for _ in range(2))
    for part in ("body", "blend_in", "blend_out"):
        np.testing.assert_array_equal(first[part], again[part])
    assert first["blend_in"].shape == (2, 48, 64, 3)


def test_a_short_source_is_an_error(clip):
    seg = plan_segments(range(N + 4), 6, 2, 1)[1]
    with pytest.raises(Exception, match="needs frames"):
        dream_segment(job(clip, "independent"), seg)


def test_odd_sized_frames_are_padded_to_even_sides_like_the_one_worker_writer(tmp_path):
    """H.264 yuv420p needs even sides: a 65x47 source (lossless FFV1) comes back 66x48, as VideoWriter pads it."""
    path = tmp_path / "odd.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 65, 47, "yuv444p"
        for t in range(4):
            frame = av.VideoFrame.from_ndarray(to_uint8_hwc(textured_image(47, 65, seed=t)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    seg = plan_segments(range(4), 2, 1, 1)[1]
    result = dream_segment(job(path, "independent"), seg)
    assert result.size == (66, 48) and frames_of(result)["body"].shape[1:3] == (48, 66)
    assert result.blend_in.shape[1:3] == (48, 66)


def test_a_segment_equals_the_one_worker_run_of_the_same_frames(clip, tmp_path):
    """A Ray worker's segment, built from the command line's flags as the driver builds it, against the one-worker
    command over the segment's frames (burn-in included, so both start afresh at the same frame). The segment's
    dream of the previous segment's overlap and its body go into a writer as the driver's assembler puts them
    (frames written, the body committed as encoded): the output is the one-worker output, frame for frame. A worker
    that dropped the flow (or the colour coherence, or the carry) would differ by several levels."""
    from dream_core.cli import build_parser, main
    from dream_core.cli.distributed import video_job
    from dream_core.cli.video_run import check_video_run
    from dream_core.video import read_frames

    flags = ["--octaves", "1", "--iterations", "2", "--jitter", "4", "--mode", "stable", "--device", "cpu",
             "--crf", "0", "--x264-preset", "ultrafast"]
    args = build_parser().parse_args(["video", str(clip), str(tmp_path / "unused.mp4"), *flags])
    run = check_video_run(args, torch.device("cpu"))
    job = video_job(args, run.settings, run.video, run.info.frame_rate, run.frames, run.model.name)
    seg = plan_segments(run.frames, 4, 3, 2)[1]
    assert (seg.dream, seg.blend_in, seg.body) == (range(1, 8), range(2, 4), range(4, 8))
    result = dream_segment(job, seg)
    with VideoWriter(tmp_path / "ray.mp4", RATE, crf=0, x264_preset="ultrafast", segment_frames=2) as writer:
        for frame in result.blend_in:
            writer.write(frame)
        writer.commit_encoded(result.body, result.body_frames, result.size)
    ray = np.stack(list(read_frames(tmp_path / "ray.mp4"))).astype(float)

    one = tmp_path / "one.mp4"
    assert main(["video", str(clip), str(one), *flags, "--start", "1"]) == 0
    alone = np.stack(list(read_frames(one))).astype(float)[1:]  # frames 2..7
    assert ray.shape == alone.shape == (6, 48, 64, 3)
    assert np.abs(ray - alone).mean() < 0.05, np.abs(ray - alone).mean(axis=(1, 2, 3))
