"""A cadence's in-between frames (dream_core.clip.cadence): carried from the dreamed frames on both sides."""

import torch

from conftest import panning_clip
from dream_core import DreamSettings
from dream_core.clip import ClipPlan
from dream_core.clip import FrameDreamer, VideoSettings
from dream_core.clip.loop import FlowPairs, dream_clip

FAST = DreamSettings(num_octaves=1, num_iterations=3, jitter=2, learning_rate=0.05)
SHARP = VideoSettings(occlusion_feather=0.0)  # no soft edges: the weights are exactly the reliability


def _run(model, clip, pairs, cadence, video=SHARP):
    plan = ClipPlan(model, FAST, objective="conv2", video=video, cadence=cadence)
    with FrameDreamer(model, "conv2", FAST, video) as dreamer:
        return [d.image for d in dream_clip(dreamer, enumerate(clip), FlowPairs(pairs), plan=plan)]


def test_in_between_frames_cross_fade_from_one_dreamed_frame_to_the_next(tiny_model):
    clip = torch.cat([panning_clip(1)] * 4)  # a still scene: zero flow, all reliable
    still = [(torch.zeros(48, 64, 2), torch.ones(48, 64))] * 3
    out = _run(tiny_model, clip, still, cadence=3)
    raw = clip[:1]
    d0, d3 = out[0] - raw, out[3] - raw
    assert (d3 - d0).abs().mean() > 0.1 * d0.abs().mean()  # the second key has new detail to fade in
    for k, share in ((1, 1 / 3), (2, 2 / 3)):
        assert torch.allclose(out[k], (raw + (1 - share) * d0 + share * d3).clamp(0, 1), atol=1e-5)


def test_new_content_fades_in_from_the_next_dreamed_frame_where_the_earlier_one_has_none(tiny_model):
    clip = torch.cat([panning_clip(1)] * 3)
    flow = torch.zeros(48, 64, 2)
    first_unreliable = torch.ones(48, 64)
    first_unreliable[:, :16] = 0  # the left strip of frame 1 is "new": nothing carried from frame 0 there
    pairs = [(flow, first_unreliable), (flow, torch.ones(48, 64))]
    out = _run(tiny_model, clip, pairs, cadence=2)
    raw = clip[:1]
    d0, d2 = out[0] - raw, out[2] - raw
    left, right = (..., slice(0, 16)), (..., slice(16, None))
    # key 2 starts the strip from its raw pixels too (unreliable on the way), so it is half there at frame 1
    assert torch.allclose(out[1][left], (raw + 0.5 * d2)[left].clamp(0, 1), atol=1e-5)
    assert torch.allclose(out[1][right], (raw + 0.5 * d0 + 0.5 * d2)[right].clamp(0, 1), atol=1e-5)


def test_moving_scene_in_between_frames_follow_both_dreams_along_the_flow(tiny_model):
    clip = panning_clip(4, step=2)
    pan = torch.zeros(48, 64, 2)
    pan[..., 0] = 2.0  # frame t(x) = frame t-1(x + 2): content moves 2 px left per frame
    out = _run(tiny_model, clip, [(pan, torch.ones(48, 64))] * 3, cadence=3)
    d = [out[t] - clip[t:t + 1] for t in range(4)]
    w = 64

    def at(diff, shift):  # columns 12..52 of a frame, from a dream ``shift`` frames away (+: later)
        return diff[..., 12 - 2 * shift: w - 12 - 2 * shift]

    for k in (1, 2):
        want = (1 - k / 3) * at(d[0], -k) + (k / 3) * at(d[3], 3 - k)
        assert (at(d[k], 0) - want).abs().mean() < 0.05 * at(d[k], 0).abs().mean(), k


def test_in_between_frames_keep_their_source_frames_colour_balance(tiny_model):
    """Colour coherence finishes every in-between frame too: carried from keys whose contrast a single match
    cannot fully restore, they would inherit the keys' drift (2..5 CIELAB units here without it)."""
    from dream_core.colour import colour_balance

    n = 7
    clip = panning_clip(n, step=2) * torch.tensor([0.55, 0.6, 0.5]).view(1, 3, 1, 1) + 0.2  # a grey scene
    pan = torch.zeros(48, 64, 2)
    pan[..., 0] = 2.0
    video = VideoSettings(colour_coherence=1.0)
    strong = FAST.with_(learning_rate=0.3)
    plan = ClipPlan(tiny_model, strong, objective="conv2", video=video, cadence=3)
    with FrameDreamer(tiny_model, "conv2", strong, video) as dreamer:
        out = torch.cat([d.image for d in dream_clip(dreamer, enumerate(clip), FlowPairs([(pan, None)] * (n - 1)),
                                                     plan=plan)])
    gap = (colour_balance(out) - colour_balance(clip)).abs().amax(dim=1)
    between = [1, 2, 4, 5]
    assert not torch.equal(out[between], clip[between])  # they do carry the dream
    assert gap[between].max() < 0.2, gap


def test_the_dreamer_alone_holds_the_in_between_frames_until_the_next_key(tiny_model):
    """One owner: the frame dreamer's pending frames, by global index; the key settles them with their state
    (the way back to the earlier key, which a run resumed after them continues from)."""
    clip = panning_clip(4)
    plan = ClipPlan(tiny_model, FAST, objective="conv2", video=SHARP, cadence=3, cadence_start=10)
    flow = torch.zeros(48, 64, 2)
    with FrameDreamer(tiny_model, "conv2", FAST, SHARP) as dreamer:
        for k, index in enumerate(range(10, 14)):
            dreamer.dream_next(clip[k:k + 1], None if k == 0 else flow, plan=plan(index), index=index)
            assert [dreamer.pending.holds(i) for i in range(10, 14)] == [False, k >= 1, k >= 2, False]
        settled = dreamer.settle_between()
        assert len(dreamer.pending) == 0 and dreamer.settle_between() == []
    assert [(frame.index, frame.age, int(frame.path.as_carry()["age"])) for frame, _ in settled] == [(11, 1, 1),
                                                                                                  (12, 2, 2)]
    assert all(torch.equal(frame.raw, clip[k + 1:k + 2]) for k, (frame, _) in enumerate(settled))
