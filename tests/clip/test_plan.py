"""ClipPlan (dream_core.clip.plan) and the frame loop driven by it: schedules, cadence, drift, masks."""

import math

import pytest
import torch

from conftest import panning_clip, textured_image
from dream_core import DreamSettings, dream_image
from dream_core.animation import MaskBatch, MaskSource, Motion
from dream_core.clip import ClipPlan
from dream_core.errors import InvalidParameterError, ScheduleSyntaxError, UnknownLayerError
from dream_core.objectives import SumObjective
from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=4)


def flows_of(n: int, h: int = 48, w: int = 64, step: float = 2.0):
    """Precomputed pairs for panning_clip: backward flow u = +step, everything reliable."""
    flow = torch.zeros(h, w, 2)
    flow[..., 0] = step
    return [(flow, torch.ones(h, w))] * (n - 1)


def run(model, clip, plan=None, masks=None, video=VideoSettings(), settings=FAST, flows=None):
    from dream_core.clip.loop import FlowPairs

    n = clip.shape[0]
    source = FlowPairs(flows if flows is not None else flows_of(n)) if video.needs_flow else None
    with FrameDreamer(model, "conv2", settings, video) as dreamer:
        return [d.image for d in dream_clip(dreamer, enumerate(clip), source, plan=plan, masks=masks)]


def test_a_schedule_changes_each_frames_settings_as_written(tiny_model):
    plan = ClipPlan(tiny_model, FAST, objective="conv2",
                    schedules={"learning_rate": "0:(0.01), 4:(0.05)", "num_iterations": "hold: 0:(2), 2:(6)",
                               "carry": "0:(0.5), 4:(0.9)", "zoom": "0:(1), 4:(1.04)", "translate": "0:(0,0), 4:(4,-2)"})
    p = [plan(i) for i in range(6)]
    assert [round(x.settings.learning_rate, 4) for x in p] == [0.01, 0.02, 0.03, 0.04, 0.05, 0.05]
    assert [x.settings.num_iterations for x in p] == [2, 2, 6, 6, 6, 6]
    assert p[2].video.carry == pytest.approx(0.7) and p[2].motion == Motion(zoom=1.02, translate=(2.0, -1.0))
    assert all(x.settings.seed == FAST.seed and x.dream for x in p)


def test_the_loop_dreams_each_frame_with_its_scheduled_settings(tiny_model):
    """Frame k of an independent clip under a schedule equals frame k dreamed alone with that frame's settings."""
    clip = panning_clip(3)
    plan = ClipPlan(tiny_model, FAST, objective="conv2", video=VideoSettings(mode="independent"),
                    schedules={"learning_rate": "0:(0.005), 2:(0.05)"})
    outs = run(tiny_model, clip, plan, video=plan.video)
    for k in range(3):
        assert torch.equal(outs[k], dream_image(tiny_model, clip[k:k + 1], "conv2", plan(k).settings))
    assert not torch.equal(outs[2], dream_image(tiny_model, clip[2:3], "conv2", FAST))


def test_objective_schedule_cross_fades_and_switches(tiny_model):
    plan = ClipPlan(tiny_model, FAST, schedules={"objective": "0:(conv1), 10:(conv3:[1,2])"})
    assert plan(0).objective.to_string() == "conv1" and plan(10).objective.to_string() == "conv3:1-2"
    mid = plan(5).objective
    assert isinstance(mid, SumObjective) and set(mid.layers()) == {"conv1", "conv3"}
    assert plan.layers == ["conv1", "conv3"]
    clip = panning_clip(3)
    independent = VideoSettings(mode="independent")
    outs = run(tiny_model, clip, ClipPlan(tiny_model, FAST, video=independent,
                                          schedules={"objective": "hold: 0:(conv1), 1:(conv3)"}), video=independent)
    assert torch.equal(outs[1], dream_image(tiny_model, clip[1:2], "conv3", FAST))
    with pytest.raises(UnknownLayerError):
        ClipPlan(tiny_model, FAST, schedules={"objective": "0:(conv1), 10:(conv9)"})


def test_cadence_dreams_exactly_every_nth_frame(tiny_model, monkeypatch):
    import dream_core.clip.frame_dreamer as fd

    calls = []
    real = fd.dream_image
    monkeypatch.setattr(fd, "dream_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    for n, cadence in [(7, 1), (7, 2), (7, 3), (8, 4)]:
        calls.clear()
        clip = panning_clip(n)
        outs = run(tiny_model, clip, ClipPlan(tiny_model, FAST, objective="conv2", cadence=cadence))
        assert len(outs) == n and len(calls) == math.ceil(n / cadence), (n, cadence)


def test_cadence_carries_the_dream_along_the_flow_between_dreamed_frames(tiny_model):
    clip = panning_clip(3)
    outs = run(tiny_model, clip, ClipPlan(tiny_model, FAST, objective="conv2", cadence=3))
    diff0, diff1 = outs[0] - clip[:1], outs[1] - clip[1:2]
    # Frame 1 is frame 0's dream moved 2 px with the pan (u = +2: content moves left), not re-dreamed.
    assert torch.allclose(diff1[..., 4:-6], diff0[..., 6:-4], atol=2e-3)
    with pytest.raises(InvalidParameterError, match="cadence"):
        ClipPlan(tiny_model, FAST, objective="conv2", cadence=0)


def test_cadence_needs_a_flow_based_mode(tiny_model):
    clip = panning_clip(3)
    independent = VideoSettings(mode="independent")
    with pytest.raises(InvalidParameterError, match="mode 'stable'"):
        ClipPlan(tiny_model, FAST, objective="conv2", video=independent, cadence=2)
    with pytest.raises(InvalidParameterError, match="made for mode 'stable'"):
        run(tiny_model, clip, ClipPlan(tiny_model, FAST, objective="conv2"), video=independent)


def test_drift_moves_the_carried_dream_relative_to_the_scene(tiny_model):
    still = torch.cat([textured_image(48, 64, seed=2)] * 2)
    zero = [(torch.zeros(48, 64, 2), torch.ones(48, 64))]
    video = VideoSettings(mode="stable", carry=1.0, temporal_weight=0.0, later_iterations=0.25)
    plain = run(tiny_model, still, ClipPlan(tiny_model, FAST, objective="conv2", video=video), video=video, flows=zero)
    drifted = run(tiny_model, still, ClipPlan(tiny_model, FAST, objective="conv2", video=video, motion=Motion(translate=(3, 0))),
                  video=video, flows=zero)
    assert torch.equal(plain[0], drifted[0])

    def carried_error(out: torch.Tensor, shift: int) -> float:
        """How well frame 1's dream matches frame 0's dream moved right by ``shift`` px."""
        d0, d1 = plain[0] - still[:1], out - still[1:2]
        return float((d1[..., 8:-8] - d0[..., 8 - shift:-8 - shift]).abs().mean())

    assert carried_error(drifted[1], 3) < 0.6 * carried_error(drifted[1], 0)
    assert carried_error(plain[1], 0) < 0.6 * carried_error(plain[1], 3)


def test_outside_the_mask_the_output_is_the_input(tiny_model):
    clip = panning_clip(4)
    mask = torch.zeros(48, 64)
    mask[:, 32:] = 1.0
    mask[:, 28:32] = 0.5  # a soft edge
    for video in (VideoSettings(), VideoSettings(mode="seed"), VideoSettings(mode="independent")):
        outs = run(tiny_model, clip, ClipPlan(tiny_model, FAST, objective="conv2", video=video, cadence=1), MaskSource(mask),
                   video=video)
        for k, out in enumerate(outs):
            assert torch.equal(out[..., :28], clip[k:k + 1, :, :, :28]), (video.mode, k)
            assert (out[..., 32:] - clip[k:k + 1, :, :, 32:]).abs().mean() > 0.01
    outs = run(tiny_model, clip, ClipPlan(tiny_model, FAST, objective="conv2", cadence=2), MaskSource(mask))
    assert all(torch.equal(o[..., :28], clip[k:k + 1, :, :, :28]) for k, o in enumerate(outs))


def test_one_mask_per_frame(tiny_model):
    clip = panning_clip(2)
    masks = torch.zeros(2, 48, 64)
    masks[0, :, :32] = 1.0
    masks[1, :, 32:] = 1.0
    outs = run(tiny_model, clip, None, MaskBatch(masks), video=VideoSettings(mode="independent"))
    assert torch.equal(outs[0][..., 40:], clip[:1, :, :, 40:]) and torch.equal(outs[1][..., :24], clip[1:, :, :, :24])
    with pytest.raises(Exception, match="no mask for frame 5"):
        MaskBatch(masks)(5)


def test_plan_check_names_the_frame_and_the_schedule(tiny_model):
    plan = ClipPlan(tiny_model, FAST, objective="conv2", schedules={"learning_rate": "0:(0.01), 10:(-0.02)"})
    with pytest.raises(InvalidParameterError, match=r"learning_rate.*frame 10.*-0.02"):
        plan.check(range(0, 20))
    later = ClipPlan(tiny_model, FAST, objective="conv2", schedules={"learning_rate": "0:(0.01), 5:(0.01), 10:(-0.02)"})
    later.check(range(0, 6))  # the bad values lie beyond these frames
    with pytest.raises(InvalidParameterError, match="cannot be scheduled.*Did you mean: 'learning_rate'"):
        ClipPlan(tiny_model, FAST, schedules={"learnig_rate": "0.1"})
    with pytest.raises(ScheduleSyntaxError, match="frame rate"):
        ClipPlan(tiny_model, FAST, objective="conv2", schedules={"zoom": "0s:(1), 1s:(1.1)"})(3)
    assert ClipPlan(tiny_model, FAST, objective="conv2", schedules={"zoom": "0s:(1), 1s:(1.1)"}, fps=10)(5).motion.zoom == pytest.approx(1.05)


def test_cadence_carries_from_the_last_dreamed_frame_in_one_warp_and_resumes_exactly(tiny_model):
    from dream_core.clip.loop import ClipState, FlowPairs

    clip = panning_clip(6)
    plan = ClipPlan(tiny_model, FAST, objective="conv2", cadence=3)
    pairs = flows_of(6)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        whole = list(dream_clip(dreamer, enumerate(clip), FlowPairs(pairs), plan=plan))
    assert set(whole[1].state.path) == {"diff", "flow", "reliable", "age"} and not whole[3].state.path
    # Half-pixel steps: frame 2 is frame 0's dream moved 3 px in one warp, as sharp as frame 0's (warped at
    # each frame it would be blurred twice by bilinear sampling at half a pixel).
    half = flows_of(3, step=1.5)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        sharp = [d.image for d in dream_clip(dreamer, enumerate(clip[:3]), FlowPairs(half), plan=plan)]
    d0, d2 = sharp[0] - clip[:1], sharp[2] - clip[2:3]
    moved = (d2[..., 4:-8] - d0[..., 7:-5]).abs().mean()
    assert moved < 0.05 * d0.abs().mean()
    # Saved after an in-between frame (as the writer saves it: numpy arrays), resumed: the same frames.
    saved = {k: v.cpu().numpy() for k, v in whole[1].state.carry().items()}
    start = ClipState.from_carry(1, saved)
    with FrameDreamer(tiny_model, "conv2", FAST, VideoSettings()) as dreamer:
        resumed = list(dream_clip(dreamer, ((k, clip[k:k + 1]) for k in range(2, 6)), FlowPairs(pairs[1:]),
                                  start=start, plan=plan))
    assert all(torch.equal(a.image, b.image) for a, b in zip(resumed, whole[2:]))
