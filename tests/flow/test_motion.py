"""Motion as a backward flow (dream_core.flow.motion): directions of zoom, rotation, translation; composition."""

import pytest
import torch

from dream_core.errors import InvalidParameterError
from dream_core.flow.motion import Motion, apply_motion, compose_backward, motion_flow
from dream_core.flow.warp import warp


def _marker(h: int = 41, w: int = 41, row: int = 20, col: int = 30) -> torch.Tensor:
    img = torch.zeros(1, 1, h, w)
    img[0, 0, row, col] = 1.0
    return img


def _where(img: torch.Tensor) -> tuple[int, int]:
    return divmod(int(img.flatten().argmax()), img.shape[-1])


@pytest.mark.parametrize("motion, expected", [
    (Motion(rotate=90), (10, 20)),          # right of centre -> above it: counter-clockwise on screen
    (Motion(rotate=-90), (30, 20)),
    (Motion(translate=(3, 2)), (22, 33)),   # content moves right and down
    (Motion(zoom=2.0), (20, 40)),           # away from the centre: zooming in
    (Motion(zoom=0.5), (20, 25)),
])
def test_motion_moves_content_the_documented_way(motion, expected):
    assert _where(apply_motion(_marker(), motion, padding_mode="zeros")) == expected


def test_identity_is_zero_flow_and_returns_the_image():
    assert torch.equal(motion_flow(9, 13, Motion()), torch.zeros(9, 13, 2))
    img = torch.rand(1, 3, 9, 13)
    assert apply_motion(img, Motion()) is img


def test_composed_flow_is_one_warp_for_two():
    from conftest import textured_image

    img = textured_image(48, 64)
    first, then = motion_flow(48, 64, Motion(translate=(2.5, -1))), motion_flow(48, 64, Motion(rotate=4, zoom=1.05))
    twice = warp(warp(img, first, padding_mode="border"), then, padding_mode="border")
    once = warp(img, compose_backward(first, then), padding_mode="border")
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert (twice[inner] - once[inner]).abs().mean() < 0.005


def test_bad_motion_is_refused():
    for bad in (Motion(zoom=0), Motion(zoom=float("nan")), Motion(rotate=float("inf")), Motion(translate=(1, float("nan")))):
        with pytest.raises(InvalidParameterError):
            bad.validate()
