"""Colour balance in CIELAB (dream_core.colour) and its use by the frame dreamer (colour_coherence)."""

import pytest
import torch

from conftest import panning_clip, textured_image
from dream_core import DreamSettings
from dream_core.animation import FeedbackFrames, Motion
from dream_core.colour import colour_balance, lab_to_rgb, match_colour_balance, rgb_to_lab
from dream_core.errors import InvalidParameterError
from dream_core.clip import FrameDreamer, VideoSettings, dream_frames
from dream_core.clip.loop import dream_clip

FAST = DreamSettings(num_octaves=1, num_iterations=3, jitter=2, learning_rate=0.05)


def test_lab_round_trip_and_known_colours():
    rgb = torch.rand(2, 3, 16, 20, dtype=torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    lab = rgb_to_lab(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).view(3, 3, 1, 1))
    assert torch.allclose(lab[0].flatten(), torch.tensor([100.0, 0.0, 0.0]), atol=1e-3)  # white
    assert torch.allclose(lab[1].flatten(), torch.tensor([0.0, 0.0, 0.0]), atol=1e-3)  # black
    assert lab[2, 1].item() > 75 and lab[2, 2].item() > 60  # sRGB red: strongly +a*, +b*


def test_match_moves_brightness_contrast_and_cast_but_keeps_the_dreams_colours():
    photo = lambda seed: textured_image(48, 48, seed=seed) * 0.5 + 0.25  # noqa: E731 - photo-like colour spread
    reference = photo(1)
    # a washed-out, yellow-cast version with more colour spread (what a drifting feedback loop makes)
    lab = rgb_to_lab(photo(2))
    L, a, b = lab.unbind(1)
    drifted = lab_to_rgb(torch.stack(((L - L.mean()) * 0.6 + L.mean() + 8, a * 1.3 + 3, b * 1.3 + 8), dim=1))
    matched = match_colour_balance(drifted, reference)
    got, want, before = colour_balance(matched)[0], colour_balance(reference)[0], colour_balance(drifted)[0]
    assert (got - want).abs().max() < 1.0 < (before - want).abs().max()
    spread = lambda img: rgb_to_lab(img)[:, 1:].std()  # noqa: E731 - the colours the dream painted
    assert spread(matched) == pytest.approx(spread(drifted).item(), rel=0.1)  # gamut clipping at the stretched lightness ends trims a little
    half = colour_balance(match_colour_balance(drifted, reference, 0.5))[0]
    assert (half - (before + want) / 2).abs().max() < 1.0


def test_strength_zero_is_the_identity_and_out_of_range_is_refused():
    img = textured_image(16, 16)
    assert match_colour_balance(img, torch.zeros(1, 3, 4, 4), 0.0) is img
    with pytest.raises(InvalidParameterError, match="colour_coherence must be in 0..1; got 1.5"):
        match_colour_balance(img, img, 1.5)
    with pytest.raises(InvalidParameterError, match="colour_coherence"):
        VideoSettings(colour_coherence=-0.1).validate()


def _cast(frames) -> float:
    return float(colour_balance(torch.cat(list(frames)))[:, 2:].abs().sum(1).max())


def test_video_frames_keep_their_source_frames_balance(tiny_model):
    clip = panning_clip(3) * torch.tensor([0.55, 0.6, 0.5]).view(1, 3, 1, 1) + 0.2  # a grey scene
    flows = [(torch.full((48, 64, 2), 0.0), None)] * 2
    strong = FAST.with_(learning_rate=0.3)
    plain = list(dream_frames(tiny_model, clip, "conv2", strong, VideoSettings(), flows=flows))
    kept = list(dream_frames(tiny_model, clip, "conv2", strong, VideoSettings(colour_coherence=1.0), flows=flows))
    source = colour_balance(clip)
    for frames in (plain, kept):
        assert not torch.equal(torch.cat(frames), clip)
    gap = lambda frames: (colour_balance(torch.cat(frames)) - source).abs()  # noqa: E731
    # brightness and cast matched; the contrast as far as MAX_CONTRAST_GAIN lets one match go
    assert gap(kept)[:, [0, 2, 3]].max() < 1.0 < gap(plain)[:, [0, 2, 3]].max()
    assert (gap(kept)[:, 1] < 0.6 * gap(plain)[:, 1]).all()


def test_a_feedback_animation_keeps_the_start_images_balance(tiny_model):
    start = textured_image(48, 48, seed=3)
    strong = FAST.with_(learning_rate=0.3)

    def animate(coherence: float) -> list[torch.Tensor]:
        video = VideoSettings(mode="independent", colour_coherence=coherence)
        with FrameDreamer(tiny_model, "conv2", strong, video, colour_reference=start) as dreamer:
            frames = FeedbackFrames(dreamer, start, 6, lambda k: Motion(zoom=1.05))
            return [done.image for done in dream_clip(dreamer, frames, None)]

    want = colour_balance(start)
    drift = lambda frames: (colour_balance(frames[-1]) - want).abs()  # noqa: E731
    kept, plain = drift(animate(1.0)), drift(animate(0.0))
    assert kept[:, [0, 2, 3]].max() < 1.0 < plain[:, [0, 2, 3]].max() and kept[0, 1] < 0.6 * plain[0, 1]


def test_colours_clipped_at_the_gamut_edge_are_corrected_again():
    """A strong cast change pushes colours out of sRGB: measured again, the rest is corrected."""
    reference = lab_to_rgb(rgb_to_lab(textured_image(48, 48, seed=1) * 0.5 + 0.25) + torch.tensor([0.0, 0, -20]).view(1, 3, 1, 1))
    image = lab_to_rgb(rgb_to_lab(textured_image(48, 48, seed=2)) + torch.tensor([10.0, 0, 25]).view(1, 3, 1, 1))
    gap = (colour_balance(match_colour_balance(image, reference)) - colour_balance(reference)).abs().max()
    assert gap < 0.2  # one uncorrected match leaves ~1 in a*
