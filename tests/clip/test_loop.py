"""The one frame loop (dream_core.clip.loop): it follows the flow, by global index, resumably."""

import pytest
import torch

from conftest import panning_clip
from dream_core import DreamSettings
from dream_core.errors import FlowError, InvalidParameterError
from dream_core.flow import FlowEstimator, FlowSet, compute_flows
from dream_core.stability import stability_metrics
from dream_core.clip import ClipState, FrameDreamer, PrecomputedFlows, VideoSettings, check_clip_flows, dream_clip, dream_frames, frame_range

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=4)


def run(model, clip, flows, video=VideoSettings(), start=0, **kw) -> torch.Tensor:
    """The clip dreamed through dream_clip, frames numbered from ``start``; ``[N,3,H,W]`` on the CPU."""
    with FrameDreamer(model, "conv2", FAST, video) as dreamer:
        return torch.cat([d.image.cpu() for d in dream_clip(dreamer, enumerate(clip, start), flows, **kw)])


def still_flows(flows: FlowSet) -> FlowSet:
    """The same clip's flows with no motion at all, every pixel reliable (what dropping the flow amounts to)."""
    return FlowSet(torch.zeros_like(flows.backward), None, torch.ones_like(flows.reliable), method="zero")


@pytest.fixture(scope="module")
def pan():
    """A texture panning 3 px per frame and its DIS flows."""
    clip = panning_clip(5, 48, 64, step=3)
    return clip, compute_flows(clip, estimator=FlowEstimator("dis"))


def test_the_real_flow_keeps_the_dream_on_the_scene_and_zero_flow_does_not(tiny_model, pan):
    clip, flows = pan
    real, still = run(tiny_model, clip, flows), run(tiny_model, clip, still_flows(flows))
    torch.testing.assert_close(real[0], still[0])  # the first frame has no previous frame
    assert (real[1:] - still[1:]).abs().mean() > 1e-3
    # Measured with the input's own motion: the output dreamed along the real flow changes less
    # from frame to frame than what the motion explains (better aligned) than the one dreamed with zero flow.
    aligned, misaligned = stability_metrics(clip, real, flows=flows), stability_metrics(clip, still, flows=flows)
    assert aligned.warp_err_out < 0.8 * misaligned.warp_err_out


def test_estimated_flow_equals_the_precomputed_flow(tiny_model, pan):
    clip, flows = pan
    estimated = run(tiny_model, clip, FlowEstimator("dis"))
    assert torch.equal(estimated, run(tiny_model, clip, flows))


def test_global_indices_look_up_the_clips_flows(tiny_model, pan):
    """Frames 2..4 of the clip, numbered as in the clip, read the clip's flows for frames 3 and 4."""
    clip, flows = pan
    seen = []
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        got = [d for d in dream_clip(dreamer, zip(range(2, 5), clip[2:]), flows,
                                     on_step=lambda index, step, total, current: seen.append((index, step)))]
    assert [d.index for d in got] == [2, 3, 4] and got[-1].state.index == 4
    assert seen[0] == (2, 1) and seen[-1] == (4, FAST.num_octaves * round(FAST.num_iterations * 0.6))
    sub = FlowSet(flows.backward[2:], None, flows.reliable[2:])  # the same flows for a clip starting at frame 2
    torch.testing.assert_close(torch.cat([d.image for d in got]), run(tiny_model, clip[2:], sub, start=0))
    torch.testing.assert_close(torch.cat([d.image for d in got]), run(tiny_model, clip[2:], PrecomputedFlows(sub, 2), start=2))
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        with pytest.raises(FlowError, match="frame 4 follows frame 2"):
            list(dream_clip(dreamer, [(2, clip[2]), (4, clip[4])], flows))


def test_resume_from_a_saved_state_matches_the_uninterrupted_run(tiny_model, pan):
    clip, flows = pan
    full = run(tiny_model, clip, flows)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        done = list(dream_clip(dreamer, enumerate(clip[:3]), flows))
    carry = {k: v.cpu().numpy() for k, v in done[-1].state.carry().items()}  # what the writer saves
    start = ClipState.from_carry(2, carry)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        resumed = torch.cat([d.image for d in dream_clip(dreamer, zip(range(3, 5), clip[3:]), flows, start=start)])
    assert torch.equal(resumed, full[3:])


def test_flow_is_needed_for_flow_modes(tiny_model):
    with pytest.raises(FlowError, match="needs the optical flow"):
        list(dream_frames(tiny_model, panning_clip(2), "conv2", FAST, VideoSettings(mode="stable")))
    list(dream_frames(tiny_model, panning_clip(2), "conv2", FAST, VideoSettings(mode="independent")))


def test_flow_pairs_running_out_is_an_error(tiny_model):
    with pytest.raises(FlowError, match="fewer entries than frames"):
        list(dream_frames(tiny_model, panning_clip(3), "conv2", FAST, VideoSettings(),
                          flows=[(torch.zeros(48, 64, 2), None)]))


def test_frame_range():
    assert frame_range(10) == range(0, 10)
    assert frame_range(10, 2, 5) == range(2, 5)
    assert frame_range(10, 8, 20) == range(8, 10)
    with pytest.raises(InvalidParameterError, match="start frame 10 is outside") as info:
        frame_range(10, 10)
    assert info.value.parameter == "start"
    with pytest.raises(InvalidParameterError, match="after") as info:
        frame_range(10, 5, 5)
    assert info.value.parameter == "end"


def test_check_clip_flows_before_a_long_run(pan):
    clip, flows = pan
    stable, independent = VideoSettings(), VideoSettings(mode="independent")
    check_clip_flows(stable, flows, range(5), 5, 48, 64)
    check_clip_flows(independent, None, range(5), 5, 48, 64)
    check_clip_flows(stable, None, range(3, 4), 5, 48, 64)  # one frame needs no flow
    with pytest.raises(FlowError, match="needs the optical flow") as info:
        check_clip_flows(stable, None, range(5), 5, 48, 64)
    assert info.value.parameter == "flow"
    with pytest.raises(FlowError, match="5 frames of 64x48 but 4 frames"):
        check_clip_flows(stable, flows, range(4), 4, 48, 64)


def test_stable_flickers_less_than_independent_on_real_model(lite0):
    clip = panning_clip(5, 64, 64, step=2)
    flows = compute_flows(clip, estimator=FlowEstimator("dis"))
    settings = DreamSettings(num_octaves=2, num_iterations=5, jitter=8)
    results = {}
    for mode in ("stable", "independent"):
        out = torch.cat(list(dream_frames(lite0, clip, "block5_dw", settings, VideoSettings(mode=mode), flows=flows)))
        results[mode] = stability_metrics(clip, out, flows=flows)
    assert results["stable"].ratio < 0.6 * results["independent"].ratio
    assert results["stable"].strength > 0.5 * results["independent"].strength


@pytest.mark.cuda
def test_loop_on_cuda_matches_the_cpu_and_stays_on_the_device(tiny_model, pan):
    clip, flows = pan
    cpu = run(tiny_model, clip, flows)
    gpu_model = tiny_model.to("cuda")
    with FrameDreamer(gpu_model, "conv2", FAST, VideoSettings()) as dreamer:
        done = list(dream_clip(dreamer, enumerate(clip), flows))
    assert all(d.image.device.type == "cuda" and d.state.raw.device.type == "cuda" for d in done)
    gpu = torch.cat([d.image.cpu() for d in done])
    assert (gpu - cpu).abs().mean() < 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("autocast", ["fp16", "bf16"])
def test_loop_on_cuda_under_autocast(lite0, pan, autocast):
    clip, flows = pan
    model = lite0.to("cuda")
    try:
        settings = DreamSettings(num_octaves=1, num_iterations=3, autocast=autocast)
        with FrameDreamer(model, None, settings, VideoSettings()) as dreamer:
            out = torch.cat([d.image.cpu() for d in dream_clip(dreamer, enumerate(clip), flows)])
        assert torch.isfinite(out).all() and (out - clip).abs().mean() > 1e-3
    finally:
        lite0.to("cpu")
