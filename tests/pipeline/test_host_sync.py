"""The dreaming thread never waits for the GPU: no operation in the frame loop reads a value back to the host.

On a GPU, reading a tensor's value on the host (``.item()``, ``bool(t)``, ``if t.all():``) or building a
tensor from host numbers (``torch.tensor([...], device=...)``: a copy from ordinary memory) waits until
the GPU has run everything queued. Once per frame, that drains the GPU's queue, which then idles while
the host prepares the next frame; inside a dream step it also makes the step impossible to capture as a
CUDA graph. This test records, on the dreaming thread, every operation of the whole rendered range
that does either, and allows only the checks of what the caller gives, made where it is given (on the
host for decoded frames and masks): ``FrameDreamer.raw_values`` and the mask check ``_given_mask``.

On the CPU these operations cost nothing, so the rule is checked here by name, not by time. Copies between
the host and a device are invisible on the CPU (everything is on the host); on a GPU
``tests/test_transfer.py::test_on_cuda_steady_frames_never_wait_for_the_gpu`` catches those with torch's
sync debug mode.
"""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dream_core import DreamSettings
from dream_core.clip import ClipPlan, FrameDreamer, VideoSettings
from dream_core.flow import FlowEstimator
from dream_core.pipeline import IndexedFrames, render_range

from conftest import panning_clip

#: Operations that read device values on the host, or copy host data into a new tensor.
READS_BACK = {"aten._local_scalar_dense.default", "aten.is_nonzero.default", "aten.item.default",
              "aten.nonzero.default", "aten.equal.default", "aten.lift_fresh.default",
              "aten.masked_select.default", "aten.unique_dim.default", "aten._unique2.default"}
#: Where the loop may check what it is given (on the host where it is given; see the module docstring), and the
#: one constant made on the host once per process and kept (``colour_preconditioner``, an lru_cache).
ALLOWED = ("raw_values", "_given_mask", "colour_preconditioner")


class HostReads(TorchDispatchMode):
    """Records operations of :data:`READS_BACK` on this thread with where they come from (dispatch modes
    are per thread: the decode, flow and encode threads are not recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in READS_BACK:
            names = [f.name for f in traceback.extract_stack()]
            if not any(name in ALLOWED for name in names):
                frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_stack()
                          if "dream_core" in f.filename][-4:]
                self.found[f"{func}: " + " <- ".join(reversed(frames))] += 1
        return func(*args, **(kwargs or {}))


class Sink:
    background = True

    def __init__(self) -> None:
        self.count = 0

    def write(self, done) -> None:
        self.count += 1


FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=2, jitter=3)


@pytest.mark.parametrize("case", ["stable", "seed", "cadence", "plain network"])
def test_the_frame_loop_reads_nothing_back_from_the_device(tiny_model, case):
    settings = FAST.with_(fast_path=False) if case == "plain network" else FAST
    video = VideoSettings(mode="seed" if case == "seed" else "stable", colour_coherence=0.5)
    if case == "seed":
        settings = settings.with_(luminance_only=True)
    plan = ClipPlan(tiny_model, settings, objective="conv2", video=video, cadence=3 if case == "cadence" else 1,
                    schedules={"learning_rate": "0:(0.02), 5:(0.01)"} if case == "stable" else None)
    clip = panning_clip(6, 48, 64, step=3)
    mask = torch.linspace(0, 1, 64).expand(48, 64).contiguous()
    sink = Sink()
    with FrameDreamer(tiny_model, "conv2", settings, video) as dreamer:  # hooks (and the fast path's check) built
        audit = HostReads()
        with audit:
            render_range(IndexedFrames(range(6), ((t, clip[t][None]) for t in range(6)), background=True), dreamer,
                         FlowEstimator("dis"), sink, plan=plan, masks=lambda t: mask, overlap=True)  # as on a GPU
    assert sink.count == 6
    assert not audit.found, "reads back from the device in the frame loop:\n" + "\n".join(
        f"{n} x {where}" for where, n in audit.found.items())
