"""The shared dream step (dream_core.dream_step): jitter offsets drawn for a whole dream, host and device rolls."""

import pytest
import torch

from dream_core import DreamSettings
from dream_core.dream_step import DeviceShift, HostShift, draw_jitter


def _per_step_draws(settings: DreamSettings, steps: int) -> list[list[int]]:
    """The jitter of earlier versions: one draw of (ox, oy) per step from the seeded generator."""
    gen = torch.Generator().manual_seed(int(settings.seed))
    return [torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=gen).tolist() for _ in range(steps)]


@pytest.mark.parametrize("jitter, seed", [(1, 0), (32, 7), (500, 2**64 - 1)])
def test_offsets_drawn_at_once_are_the_per_step_draws(jitter, seed):
    s = DreamSettings(jitter=jitter, seed=seed)
    assert draw_jitter(s, 40).tolist() == _per_step_draws(s, 40)


def test_offsets_cover_the_jitter_range_uniformly_and_follow_the_seed():
    s = DreamSettings(jitter=3, seed=5)
    offsets = draw_jitter(s, 7000)
    assert offsets.dtype == torch.long and offsets.shape == (7000, 2)
    counts = torch.bincount((offsets + 3).flatten(), minlength=7)
    assert counts.numel() == 7  # nothing outside -3..3
    assert counts.min() > 0.85 * 2000 and counts.max() < 1.15 * 2000  # every value, about equally often
    assert torch.equal(draw_jitter(s, 50), draw_jitter(s, 50))
    assert not torch.equal(draw_jitter(s, 50), draw_jitter(s.with_(seed=6), 50))
    assert not draw_jitter(s.with_(jitter=0), 9).any()


def test_device_roll_is_torch_roll_for_every_offset_even_past_the_size():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    offset = torch.zeros(2, dtype=torch.long)
    device = DeviceShift(offset, (5, 7))
    for oy in range(-12, 13):
        for ox in range(-12, 13):
            offset.copy_(torch.tensor([ox, oy]))  # rewritten in place, as before a graph replay
            host = HostShift(oy, ox)
            rolled = device.roll(x)
            assert torch.equal(rolled, torch.roll(x, (oy, ox), dims=(2, 3)))
            assert torch.equal(rolled, host.roll(x))
            assert torch.equal(device.unroll(rolled), x) and torch.equal(host.unroll(rolled), x)
