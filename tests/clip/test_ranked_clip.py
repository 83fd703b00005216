"""Ranked picks in a clip (dream_core.ranking with the frame loop): ranked once on the first frame, kept on every
frame, also by a resumed run and a segment that starts mid-clip; re-ranked per frame only when asked (/frame)."""

import numpy as np
import pytest
import torch

from conftest import multiscale_texture
from dream_core import DreamSettings, FrameDreamer, VideoSettings, dream_clip, parse_objective
from dream_core.clip import ClipPlan
from dream_core.cli import main
from dream_core.image_io import to_uint8_hwc
from dream_core.objectives import LayerObjective
from dream_core.ranking import bind_ranks, rank_clip
from dream_core.video import VideoWriter, read_frames

LAYER = "block10_dw"
SETTINGS = DreamSettings(num_octaves=1, num_iterations=2, seed=3)
N = 4


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Four unrelated 64x64 pictures: each excites other channels (checked below)."""
    return torch.cat([multiscale_texture(64, 64, seed=10 + t) for t in range(N)])


def ranking_of(model, image, text=f"{LAYER}:strong4") -> list[int]:
    bound = bind_ranks(model, parse_objective(text), image)
    assert isinstance(bound, LayerObjective)
    return list(bound.channels)


def listed(chans) -> str:
    return f"{LAYER}:[{','.join(map(str, chans))}]"


def run(model, frames, objective, mode="independent", first=0, prime=None):
    """Dream ``frames[first:]`` from a fresh start (a segment starting at ``first``); returns ``[n,3,H,W]``."""
    flows = [(torch.zeros(*frames.shape[-2:], 2), None)] * len(frames)
    with FrameDreamer(model, objective, SETTINGS, VideoSettings(mode=mode)) as dreamer:
        if prime is not None:
            rank_clip(dreamer.ranks, model, [dreamer.objective], lambda: prime)
        source = None if mode == "independent" else lambda previous, index, raw: flows[index]
        done = list(dream_clip(dreamer, ((t, frames[t:t + 1]) for t in range(first, len(frames))), source))
    return torch.cat([d.image for d in done]), dreamer.ranks


def test_the_frames_excite_different_channels(lite0, frames):
    """The premise of the tests below: re-ranking on every frame would pick other channels."""
    rankings = [ranking_of(lite0, frames[t:t + 1]) for t in range(N)]
    assert all(r != rankings[0] for r in rankings[1:]), rankings


@pytest.mark.parametrize("mode", ["independent", "stable"])
def test_a_once_ranked_clip_dreams_the_first_frames_channels_on_every_frame(lite0, frames, mode):
    first = ranking_of(lite0, frames[:1])
    ranked, ranks = run(lite0, frames, f"{LAYER}:strong4", mode)
    fixed, _ = run(lite0, frames, listed(first), mode)
    assert torch.equal(ranked, fixed)  # every frame: the same channel set, the first frame's
    assert ranks.items() == [(f"{LAYER}:strong4", tuple(first))]


def test_re_ranking_per_frame_is_asked_for_explicitly(lite0, frames):
    per_frame, ranks = run(lite0, frames, f"{LAYER}:strong4/frame")
    assert len(ranks) == 0
    for t in range(N):  # independent mode: the frame itself is what it starts from, so it is ranked on itself
        alone, _ = run(lite0, frames[t:t + 1], listed(ranking_of(lite0, frames[t:t + 1])))
        assert torch.equal(per_frame[t], alone[0])
    once, _ = run(lite0, frames, f"{LAYER}:strong4")
    assert not torch.equal(per_frame[1:], once[1:])


def test_a_segment_starting_mid_clip_ranks_on_the_clips_first_frame(lite0, frames):
    whole, _ = run(lite0, frames, f"{LAYER}:strong4")
    segment, ranks = run(lite0, frames, f"{LAYER}:strong4", first=2, prime=frames[:1])
    assert torch.equal(segment, whole[2:])
    assert ranks.items()[0][1] == tuple(ranking_of(lite0, frames[:1]))
    unprimed, _ = run(lite0, frames, f"{LAYER}:strong4", first=2)  # without: ranked on its own first frame
    assert not torch.equal(unprimed, whole[2:])


def test_every_scheduled_objective_is_ranked_on_the_first_frame(lite0, frames):
    plan = ClipPlan(lite0, SETTINGS, video=VideoSettings(mode="independent"),
                    schedules={"objective": f"hold: 0:({LAYER}:strong4), 2:(block8_dw:weak3@norm)"})
    with FrameDreamer(lite0, plan(0).objective, SETTINGS, VideoSettings(mode="independent")) as dreamer:
        rank_clip(dreamer.ranks, lite0, plan.objectives, lambda: frames[:1])
        list(dream_clip(dreamer, enumerate(frames), plan=plan))
    kept = dict(dreamer.ranks.items())
    assert kept == {f"{LAYER}:strong4": tuple(ranking_of(lite0, frames[:1])),
                    "block8_dw:weak3": tuple(ranking_of(lite0, frames[:1], "block8_dw:weak3"))}
    called = []
    rank_clip(dreamer.ranks, lite0, plan.objectives, lambda: called.append(1))  # all ranked: no frame is read
    assert not called


def test_a_resumed_video_command_ranks_like_the_uninterrupted_run(lite0, frames, tmp_path, monkeypatch):
    from dream_core.clip.frame_dreamer import FrameDreamer as Dreamer

    src = tmp_path / "cuts.mp4"
    with VideoWriter(src, 24, crf=0, resume=False) as writer:
        for frame in frames:
            writer.write(to_uint8_hwc(frame))
    flags = ["--layers", f"{LAYER}:strong4", "--octaves", "1", "--iterations", "2", "--segment-frames", "1",
             "--crf", "0", "--x264-preset", "ultrafast", "--flow", "dis"]
    assert main(["video", str(src), str(tmp_path / "full.mp4"), *flags]) == 0
    original, calls = Dreamer.dream_next, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Dreamer, "dream_next", interrupted)
    assert main(["video", str(src), str(tmp_path / "out.mp4"), *flags]) == 130
    monkeypatch.setattr(Dreamer, "dream_next", original)
    assert main(["video", str(src), str(tmp_path / "out.mp4"), *flags]) == 0  # resumes at frame 2
    full, resumed = (np.stack(list(read_frames(tmp_path / name))) for name in ("full.mp4", "out.mp4"))
    assert np.array_equal(full, resumed)
