"""Host <-> GPU copies that do not wait for the GPU (dream_core.transfer), and the pipeline built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import panning_clip
from dream_core import DreamSettings, FlowSet
from dream_core.clip import FrameDreamer, VideoSettings
from dream_core.errors import FlowError
from dream_core.flow import FlowEstimator
from dream_core.flow.reliability import flow_pair
from dream_core.image_io import to_uint8_hwc
from dream_core.pipeline import IndexedFrames, WriterSink, render_range
from dream_core.step_graph import StepGraphs
from dream_core.transfer import HostCopy, staged, to_device


def test_on_the_cpu_nothing_is_pinned_or_copied():
    x = torch.rand(2, 3, 4, 5)
    assert staged(x, "cpu") is x and not staged(x, torch.device("cpu")).is_pinned()
    assert to_device(x, "cpu") is x
    half = to_device(x, "cpu", torch.float64)
    assert half.dtype == torch.float64 and torch.equal(half.float(), x)
    assert HostCopy(x).result() is x


def test_a_host_estimator_makes_the_same_pair_from_any_device():
    """DIS on the host: the pair made from frames is moved to the current frame's device at the end, and is
    exactly what the host frames give (here both on the CPU; on a GPU the CUDA test below)."""
    clip = panning_clip(2, 48, 64, step=3)
    est = FlowEstimator("dis")
    assert est.on_host and FlowEstimator("farneback").on_host
    assert not FlowEstimator("raft_small", raft_model=torch.nn.Identity()).on_host  # RAFT: where its frames are
    a, b = flow_pair(est, clip[0], clip[1]), flow_pair(est, clip[0].clone(), clip[1].clone())
    assert torch.equal(a.backward, b.backward) and torch.equal(a.reliable, b.reliable)
    assert a.backward[..., 0].mean() > 1.5  # content moves 3 px: the flow points back along it


def test_a_flowset_with_nan_is_refused_when_made():
    bw = torch.zeros(2, 8, 8, 2)
    bw[1, 3, 3, 0] = float("nan")
    with pytest.raises(FlowError, match="backward holds NaN.*compute_flows"):
        FlowSet(bw, None, torch.ones(2, 8, 8))
    with pytest.raises(FlowError, match="reliable holds NaN"):
        FlowSet(torch.zeros(2, 8, 8, 2), None, torch.full((2, 8, 8), float("inf")))


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_staged_tensors_are_pinned_and_copied_exactly():
    x = torch.rand(1, 3, 37, 53)
    pinned = staged(x, "cuda")
    assert pinned.is_pinned() and torch.equal(pinned, x) and staged(pinned, "cuda") is pinned
    on_gpu = to_device(pinned, torch.device("cuda"), torch.float16)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float16
    assert torch.equal(on_gpu.cpu(), x.half())
    back = HostCopy(on_gpu * 2)
    assert torch.equal(back.result(), (x.half() * 2)) and back.result().is_pinned()


class _Frames:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write(self, frame, carry=None) -> None:
        self.frames.append(frame.copy())


@pytest.mark.cuda
def test_on_cuda_the_overlapped_pipeline_writes_the_sequential_frames(tiny_model):
    """Frames decoded and pinned on the host, the flow made there ahead, frames copied back through pinned
    buffers: what the sequential loop on the GPU writes."""
    model = tiny_model.to("cuda")
    clip = panning_clip(5, 48, 64, step=3)
    written = {}
    for overlap in (False, True):
        sink = _Frames()
        settings = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=3, jitter=3)
        with torch.backends.cudnn.flags(enabled=True, deterministic=True), \
                FrameDreamer(model, "conv2", settings, VideoSettings(colour_coherence=0.5)) as dreamer:
            source = IndexedFrames(range(5), ((t, clip[t][None]) for t in range(5)), background=True)
            render_range(source, dreamer, FlowEstimator("dis"), WriterSink(sink), overlap=overlap)
        written[overlap] = np.stack(sink.frames).astype(int)
    assert written[True].shape == (5, 48, 64, 3)
    # the same flows (made on the host either way) and the same dream: equal up to a GPU's run-to-run rounding
    assert np.abs(written[True] - written[False]).max() <= 1 and (written[True] != written[False]).mean() < 0.01
    assert not np.array_equal(written[True][1], to_uint8_hwc(clip[1]))  # dreamed


@pytest.mark.cuda
def test_on_cuda_a_tensor_sink_gets_every_frame_through_pinned_copies(tiny_model):
    """An IMAGE batch on the host filled from the GPU on the encode thread: every row is in place when
    render_range returns, equal to the rows written frame by frame on the caller's thread."""
    from dream_core.pipeline import TensorSink

    model = tiny_model.to("cuda")
    clip = panning_clip(4, 48, 64, step=3)
    outs = []
    for overlap in (None, False):
        out = torch.full((4, 48, 64, 3), -1.0)
        with torch.backends.cudnn.flags(enabled=True, deterministic=True), \
                FrameDreamer(model, "conv2", DreamSettings(num_octaves=1, num_iterations=2), VideoSettings()) as dreamer:
            source = IndexedFrames(range(4), ((t, clip[t][None]) for t in range(4)), background=True)
            render_range(source, dreamer, FlowEstimator("dis"), TensorSink(out), overlap=overlap)
        outs.append(out)
    assert (outs[0] >= 0).all() and (outs[0] - outs[1]).abs().max() < 1e-4


@pytest.mark.cuda
def test_on_cuda_steady_frames_never_wait_for_the_gpu(tiny_model):
    """torch's sync debug mode raises on any operation that waits for the GPU (a value read back, a blocking
    copy) from the third frame to the last one handed on. Frame 0 captures the graphs without the temporal
    anchor, frame 1 those with it (entering a capture synchronises on purpose); frames 2-5 replay them, tiles
    included, and hand their frames to a WriterSink (pinned copies and the finiteness flag; the encode
    thread's wait on its copy is the one intended and not flagged)."""
    model = tiny_model.to("cuda")
    clip = panning_clip(6, 48, 64, step=3)
    mask = torch.linspace(0, 1, 64).expand(48, 64).contiguous()

    def strict_between(done) -> None:
        torch.cuda.set_sync_debug_mode("error" if done.index in (1, 2, 3, 4) else "default")

    sink = _Frames()
    # 3 steps on every frame (later_iterations 1), both octaves in tiles of 32 px
    settings = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=3, tile_size=32, tile_overlap=8)
    try:
        with FrameDreamer(model, "conv2", settings, VideoSettings(colour_coherence=0.5, later_iterations=1.0)) as dreamer:
            source = IndexedFrames(range(6), ((t, clip[t][None]) for t in range(6)), background=True)
            render_range(source, dreamer, FlowEstimator("dis"), WriterSink(sink), masks=lambda t: mask,
                         on_frame=strict_between)
            assert StepGraphs.of(dreamer._hooks).captured() == 4  # 2 octaves, without and with the anchor
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(sink.frames) == 6 and all(f.shape == (48, 64, 3) for f in sink.frames)


@pytest.mark.cuda
def test_on_cuda_a_frame_dreamed_into_nan_is_not_written(tiny_model):
    """On a GPU the finiteness flag travels with the frame's copy and is read on the encode thread: the run
    stops naming the frame, the frames before it are written."""
    from dream_core import InvalidImageError
    from dream_core.clip.loop import FlowPairs

    model = tiny_model.to("cuda")
    clip = panning_clip(4, 48, 64, step=3)
    still, broken = torch.zeros(48, 64, 2), torch.ones(48, 64)
    broken[10, 10] = float("nan")
    sink = _Frames()
    with FrameDreamer(model, "conv2", DreamSettings(num_octaves=1, num_iterations=2), VideoSettings()) as dreamer:
        with pytest.raises(InvalidImageError, match="Frame 2 was dreamed into NaN"):
            render_range(IndexedFrames(range(4), ((t, clip[t][None]) for t in range(4)), background=True), dreamer,
                         FlowPairs([(still, None), (still, broken), (still, None)]), WriterSink(sink))
    assert len(sink.frames) == 2
