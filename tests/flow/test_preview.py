"""Flow pictures (dream_core.flow.preview): colour wheel and the clip preview."""

from __future__ import annotations

import math

import pytest
import torch

from dream_core.errors import InvalidParameterError
from dream_core.flow import FlowSet, flow_preview, flow_to_color


def test_flow_to_color_shape_range_and_hues():
    flow = torch.zeros(2, 8, 10, 2)
    flow[0, :, :5, 0] = 4.0  # right
    flow[0, :, 5:, 0] = -4.0  # left
    flow[1, :4, :, 1] = 4.0  # down
    flow[1, 4:, :, 1] = -4.0  # up
    rgb = flow_to_color(flow)
    assert rgb.shape == (2, 8, 10, 3) and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    right, left, down, up = rgb[0, 0, 0], rgb[0, 0, 9], rgb[1, 0, 0], rgb[1, 7, 0]
    torch.testing.assert_close(right, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(left, torch.tensor([0.0, 1.0, 1.0]))
    for a, b in ((right, left), (down, up), (right, down)):
        assert float((a - b).abs().max()) > 0.5
    white = flow_to_color(torch.zeros(5, 6, 2))
    assert white.shape == (5, 6, 3) and bool((white == 1).all())
    half = flow_to_color(flow[0], max_magnitude=8.0)[0, 0]
    torch.testing.assert_close(half, torch.tensor([1.0, 0.5, 0.5]))
    with pytest.raises(InvalidParameterError):
        flow_to_color(flow, max_magnitude=0)
    assert not math.isnan(float(flow_to_color(torch.randn(4, 4, 2)).sum()))


def test_flow_preview_darkens_unreliable_pixels_and_fits_max_side():
    backward = torch.zeros(2, 300, 1100, 2)
    backward[..., 0] = 3.0
    reliable = torch.ones(2, 300, 1100)
    reliable[:, :, :550] = 0
    preview = flow_preview(FlowSet(backward, None, reliable))
    assert preview.shape == (3, 140, 512, 3) and preview.dtype == torch.float32
    assert torch.equal(preview[0], torch.ones(140, 512, 3))  # frame 0: no motion
    dark, lit = preview[1, :, :200].mean(), preview[1, :, -200:].mean()
    assert float(dark) < 0.5 * float(lit)
