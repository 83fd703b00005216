"""render_range (dream_core.pipeline.render): a source's range through the frame loop into a sink, with the
overlap threads on and off."""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import panning_clip
from dream_core import DreamSettings, InvalidParameterError, VideoError
from dream_core.clip import ClipPlan, FrameDreamer, VideoSettings
from dream_core.flow import FlowEstimator
from dream_core.image_io import to_uint8_hwc
from dream_core.pipeline import (
    IndexedFrames,
    OutputOptions,
    TensorSink,
    VideoFileSource,
    WriterSink,
    open_writer,
    render_range,
    resume_state,
)
from dream_core.video import read_frames

QUICK = DreamSettings(num_octaves=1, num_iterations=2, jitter=2)
RATE = Fraction(24)
N = 7


class Recorder:
    """A sink that keeps every frame and carry state it is given (on the encode thread when ``background``)."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self.frames: list = []
        self.threads: set[str] = set()

    def write(self, done) -> None:
        self.threads.add(threading.current_thread().name)
        self.frames.append((done.index, done.image.clone(), {k: v.clone() for k, v in done.state.carry().items()}))


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    """A lossless panning clip of N frames, 64x48 (content moves 3 px per frame)."""
    path = tmp_path_factory.mktemp("pan") / "pan.mp4"
    with open_writer(path, RATE, OutputOptions(crf=0, x264_preset="ultrafast", resume=False)) as writer:
        for frame in panning_clip(N, 48, 64, step=3):
            writer.write(to_uint8_hwc(frame))
    return path


def _plan(model, video, cadence=1):
    return ClipPlan(model, QUICK, video=video, cadence=cadence)


def _render(model, pan, frames, *, overlap, cadence=1, sink=None, start=None, **kw):
    video = VideoSettings(colour_coherence=0.5)
    sink = sink if sink is not None else Recorder()
    with FrameDreamer(model, None, QUICK, video) as dreamer:
        render_range(VideoFileSource(pan, frames), dreamer, FlowEstimator("dis"), sink, overlap=overlap,
                     plan=_plan(model, video, cadence), start=start, **kw)
    return sink


def _dream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dream-")]


@pytest.mark.parametrize("cadence", [1, 3])
def test_overlapped_output_is_frame_for_frame_the_sequential_output(tiny_model, pan, cadence):
    """Decoding ahead, the next flow on its thread and writing behind change when work runs, not what it gives:
    every frame and every carry state are equal, bit for bit (in-between frames of a cadence included)."""
    sequential = _render(tiny_model, pan, range(1, N), overlap=False, cadence=cadence)
    overlapped = _render(tiny_model, pan, range(1, N), overlap=True, cadence=cadence)
    assert sequential.threads == {threading.current_thread().name}
    assert overlapped.threads == {"dream-encode"}  # the sink ran on the encode thread
    assert [i for i, *_ in overlapped.frames] == list(range(1, N))
    for (i, a, carry_a), (j, b, carry_b) in zip(sequential.frames, overlapped.frames, strict=True):
        assert i == j and torch.equal(a, b)
        assert carry_a.keys() == carry_b.keys() and all(torch.equal(carry_a[k], carry_b[k]) for k in carry_a)
    assert _dream_threads() == []


def test_the_flow_is_estimated_ahead_on_the_flow_thread(tiny_model, pan, monkeypatch):
    from dream_core.flow import estimate

    seen = []
    original = estimate.FlowEstimator.bidirectional

    def spy(self, prev, cur):
        seen.append(threading.current_thread().name)
        return original(self, prev, cur)

    monkeypatch.setattr(estimate.FlowEstimator, "bidirectional", spy)
    _render(tiny_model, pan, range(0, 4), overlap=True)
    assert len(seen) == 3 and all(name.startswith("dream-flow") for name in seen)
    seen.clear()
    _render(tiny_model, pan, range(0, 4), overlap=False)
    assert seen == [threading.current_thread().name] * 3


def test_a_resumed_overlapped_file_run_equals_an_unbroken_sequential_one(tiny_model, pan, tmp_path):
    """Cancel mid-clip (a callback raises): no pipeline thread outlives the run, the work folder keeps every
    frame dreamed before the cancel, and running again finishes it exactly as an unbroken run."""
    options = OutputOptions(crf=0, x264_preset="ultrafast", segment_frames=2)
    whole = tmp_path / "whole.mp4"
    with open_writer(whole, RATE, options, source=pan) as writer:
        _render(tiny_model, pan, range(N), overlap=False, cadence=2, sink=WriterSink(writer))

    class Cancelled(Exception):
        pass

    def cancel_at_frame_4(index, step, total, current):
        if index == 4:
            raise Cancelled

    out = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        with open_writer(out, RATE, options, source=pan) as writer:
            _render(tiny_model, pan, range(N), overlap=True, cadence=2, sink=WriterSink(writer),
                    on_step=cancel_at_frame_4)
    assert _dream_threads() == []
    assert not out.exists()
    with open_writer(out, RATE, options, source=pan) as writer:
        point, state = resume_state(writer, "cpu")
        assert point.next_frame == 3  # frames 0..2 were dreamed before frame 4 (frame 3 waits for key 4)
        _render(tiny_model, pan, range(point.next_frame, N), overlap=True, cadence=2, sink=WriterSink(writer),
                start=state)
    np.testing.assert_array_equal(np.stack(list(read_frames(out))), np.stack(list(read_frames(whole))))


class DecodeFailed(Exception):
    pass


class EncodeFailed(Exception):
    pass


def _failing_frames(fail_at):
    for t, frame in enumerate(panning_clip(5, 48, 64)):
        if t == fail_at:
            raise DecodeFailed(f"frame {t}")
        yield t, frame


@pytest.mark.parametrize("overlap", [True, False])
def test_an_error_in_the_decoder_surfaces_as_itself(tiny_model, overlap):
    sink = Recorder()
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
        with pytest.raises(DecodeFailed, match="frame 3"):
            render_range(IndexedFrames(range(5), _failing_frames(3), background=True), dreamer,
                         FlowEstimator("dis"), sink, overlap=overlap)
    assert [i for i, *_ in sink.frames] == [0, 1, 2]  # the frames before it are written
    assert _dream_threads() == []


@pytest.mark.parametrize("overlap", [True, False])
def test_an_error_in_the_encoder_surfaces_as_itself_and_stops_the_run(tiny_model, overlap):
    class Failing(Recorder):
        def write(self, done):
            if done.index == 1:
                raise EncodeFailed("disk full")
            super().write(done)

    sink = Failing()
    steps: list[int] = []
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
        with pytest.raises(EncodeFailed, match="disk full"):
            render_range(IndexedFrames(range(6), enumerate(panning_clip(6, 48, 64)), background=True), dreamer,
                         FlowEstimator("dis"), sink, overlap=overlap, on_step=lambda i, *_: steps.append(i))
    assert [i for i, *_ in sink.frames] == [0]
    assert max(steps) <= 3  # found within a frame or two, not at the end of the clip
    assert _dream_threads() == []


def test_a_source_shorter_than_its_range_or_out_of_order_is_an_error(tiny_model):
    clip = panning_clip(4, 48, 64)
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings(mode="independent")) as dreamer:
        with pytest.raises(VideoError, match=r"ended after frame 3; the range needs frames 0\.\.5"):
            render_range(IndexedFrames(range(6), enumerate(clip)), dreamer, None, Recorder())
        with pytest.raises(InvalidParameterError, match="gave frame 2 where its range 0..3 has frame 1"):
            render_range(IndexedFrames(range(4), [(0, clip[0]), (2, clip[2])]), dreamer, None, Recorder())


def test_uint8_frames_and_a_tensor_sink(tiny_model):
    """Arrays as decoded are taken as they are; a TensorSink puts frame first + k into row k."""
    clip = panning_clip(3, 48, 64)
    arrays = [to_uint8_hwc(f) for f in clip]
    out = torch.zeros(3, 48, 64, 3)
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings(mode="independent")) as dreamer:
        got = render_range(IndexedFrames(range(5, 8), zip(range(5, 8), arrays)), dreamer, None, TensorSink(out, 5))
    assert got == 3 and out.abs().sum(dim=(1, 2, 3)).min() > 0
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings(mode="independent")) as dreamer:
        rec = Recorder(background=False)
        render_range(IndexedFrames(range(5, 8), zip(range(5, 8), arrays)), dreamer, None, rec)
    assert all(torch.equal(out[k], image[0].permute(1, 2, 0)) for k, (_, image, _) in enumerate(rec.frames))


def test_frames_handed_over_before_a_cancel_are_still_written(tiny_model):
    """The writer is behind when the run is cancelled (it is held up until the cancel): what the loop had dreamed
    and handed over is written all the same (a resumable writer keeps it), in order, before the call returns."""
    cancelled = threading.Event()

    class HeldUp(Recorder):
        def write(self, done):
            assert cancelled.wait(60)
            super().write(done)

    class Cancelled(Exception):
        pass

    def cancel_at_frame_3(index, step, total, current):
        if index == 3:
            cancelled.set()
            raise Cancelled

    sink, handed = HeldUp(), []
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings(mode="independent")) as dreamer:
        with pytest.raises(Cancelled):
            render_range(IndexedFrames(range(5), enumerate(panning_clip(5, 48, 64)), background=True), dreamer, None,
                         sink, on_step=cancel_at_frame_3, on_frame=lambda done: handed.append(done.index), overlap=True)
    assert handed == [0, 1, 2] and [i for i, *_ in sink.frames] == [0, 1, 2]
    assert _dream_threads() == []


def test_a_cancel_waits_for_a_busy_decoder_to_stop(tiny_model):
    """Cancelled while the decoder thread is in the middle of a (slow) frame: the call returns only once that
    thread has ended, and the source was closed on it."""
    import time

    closed = []

    def slow_frames():
        try:
            for t, frame in enumerate(panning_clip(4, 48, 64)):
                if t:
                    time.sleep(0.5)
                yield t, frame
        finally:
            closed.append(threading.current_thread().name)

    class Cancelled(Exception):
        pass

    def cancel(index, step, total, current):
        raise Cancelled

    with FrameDreamer(tiny_model, None, QUICK, VideoSettings(mode="independent")) as dreamer:
        with pytest.raises(Cancelled):
            render_range(IndexedFrames(range(4), slow_frames(), background=True), dreamer, None, Recorder(),
                         on_step=cancel, overlap=True)
    assert _dream_threads() == [] and closed == ["dream-decode"]


def test_by_default_the_threads_run_on_a_gpu_only(tiny_model, pan):
    """On the CPU the dream's operators use every core and the threads would only compete with them: by default
    everything runs on the caller's thread (the same frames as with the threads)."""
    default, threaded = Recorder(), Recorder()
    for sink, overlap in ((default, None), (threaded, True)):
        with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
            render_range(VideoFileSource(pan, range(3)), dreamer, FlowEstimator("dis"), sink, overlap=overlap)
    assert default.threads == {threading.current_thread().name} and threaded.threads == {"dream-encode"}
    assert all(torch.equal(a[1], b[1]) for a, b in zip(default.frames, threaded.frames, strict=True))


def test_raft_estimated_ahead_on_its_thread_gives_the_same_frames(tiny_model, pan):
    """RAFT (a torch network; random weights here, 2 refinements) on the flow thread: the same flows, so the same
    frames as when it runs between the dreams."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    raft = raft_small(weights=None)
    runs = []
    for overlap in (False, True):
        sink = Recorder()
        with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
            render_range(VideoFileSource(pan, range(4)), dreamer, FlowEstimator("raft_small", raft_model=raft,
                                                                                raft_iters=2), sink, overlap=overlap)
        runs.append(sink.frames)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize("overlap", [False, True])
def test_a_frame_dreamed_into_nan_is_not_written(tiny_model, overlap):
    """The loop trusts flows once given (it reads nothing back on a GPU while it dreams): a NaN that gets in
    through a flow source surfaces where the frame is read back, before it is written, naming the frame."""
    from dream_core import InvalidImageError
    from dream_core.clip.loop import FlowPairs

    clip = panning_clip(4, 48, 64, step=3)
    still = torch.zeros(48, 64, 2)
    broken = torch.ones(48, 64)
    broken[10, 10] = float("nan")

    class Frames:
        def __init__(self):
            self.frames = []

        def write(self, frame, carry=None):
            self.frames.append(frame)

    written = Frames()
    with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
        with pytest.raises(InvalidImageError, match="Frame 2 was dreamed into NaN.*flows or masks"):
            render_range(IndexedFrames(range(4), ((t, clip[t][None]) for t in range(4)), background=True), dreamer,
                         FlowPairs([(still, None), (still, broken), (still, None)]), WriterSink(written),
                         overlap=overlap)
    assert len(written.frames) == 2  # frames 0 and 1 are kept


def test_a_tensor_sink_made_in_inference_mode_is_written_on_the_encode_thread(tiny_model):
    """ComfyUI runs nodes under torch.inference_mode(), so the IMAGE a node fills is an inference tensor; the
    encode thread writes it in the caller's mode (an in-place write outside inference mode is refused)."""
    clip = panning_clip(3, 48, 64, step=3)
    with torch.inference_mode():
        out = torch.zeros(3, 48, 64, 3)
        with FrameDreamer(tiny_model, None, QUICK, VideoSettings()) as dreamer:
            render_range(IndexedFrames(range(3), ((t, clip[t][None]) for t in range(3)), background=True), dreamer,
                         FlowEstimator("dis"), TensorSink(out), overlap=True)
    assert out.abs().sum() > 0 and out.is_inference()
