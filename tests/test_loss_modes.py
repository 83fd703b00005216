"""Loss modes (dream_core.loss_modes): each mode's value on a fixed tensor is its written formula."""

import math

import pytest
import torch

from dream_core import LOSS_MODES, layer, parse_objective
from dream_core.errors import InvalidParameterError
from dream_core.loss_modes import loss_value

#: A fixed [B=2, C=3, h=2, w=2] tensor with negative values, zeros and a dead (all-zero) channel.
FIXED = torch.tensor([
    [[[1.0, -2.0], [3.0, 0.0]], [[0.5, 0.5], [-0.5, 4.0]], [[0.0, 0.0], [0.0, 0.0]]],
    [[[-1.0, -1.0], [2.0, 2.0]], [[3.0, 0.0], [0.0, -3.0]], [[1.0, 2.0], [3.0, 4.0]]],
])


def formula(mode: str, item: list) -> float:
    """The documented formula for one batch item, written out over nested lists: item[c][y][x]."""
    values = [v for ch in item for row in ch for v in row]
    n = len(values)
    norms = [math.sqrt(sum(v * v for row in ch for v in row)) for ch in item]
    return {
        "l2": sum(v * v for v in values) / n,
        "mse": sum(v * v for v in values) / n,
        "mean": sum(values) / n,
        "abs_mean": sum(abs(v) for v in values) / n,
        "norm": sum(norms) / len(item),
        "abs_l2": sum(norms) / len(item),
        "bce": sum(math.log(1 + math.exp(v)) for v in values) / n,
    }[mode]


@pytest.mark.parametrize("mode", LOSS_MODES)
def test_each_mode_equals_its_formula_on_a_fixed_tensor(mode):
    got = loss_value(FIXED, mode)
    expected = torch.tensor([formula(mode, FIXED[b].tolist()) for b in range(2)])
    assert got.shape == (2,) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("mode", LOSS_MODES)
def test_the_shorthand_applies_the_mode_to_the_terms_channels_only(mode):
    feats = {"a": FIXED}
    got = parse_objective(f"a:[0,2]@{mode}")(feats)
    expected = torch.tensor([formula(mode, FIXED[b, [0, 2]].tolist()) for b in range(2)])
    torch.testing.assert_close(got, expected)
    assert parse_objective(f"a:[0,2]@{mode}").to_string() == ("a:[0,2]" if mode == "l2" else f"a:[0,2]@{mode}")
    torch.testing.assert_close(layer("a", loss=mode)(feats), loss_value(FIXED, mode))


def test_the_default_is_todays_l2_bit_for_bit():
    act = torch.randn(2, 5, 7, 7, dtype=torch.float16)
    assert torch.equal(parse_objective("a")({"a": act}), act.float().pow(2).mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("mode", ["norm", "abs_l2"])
def test_a_dead_channel_gives_a_finite_gradient(mode):
    act = FIXED.clone().requires_grad_(True)  # channel 2 of item 0 is all zeros
    loss_value(act, mode).sum().backward()
    assert torch.isfinite(act.grad).all()
    assert act.grad[0, 2].abs().sum() == 0


def test_modes_push_differently():
    """norm weighs every channel alike: a weak channel gets as much push as a strong one (l2 favours the strong)."""
    act = torch.cat([torch.full((1, 1, 2, 2), 10.0), torch.full((1, 1, 2, 2), 0.1)], dim=1).requires_grad_(True)
    grads = {}
    for mode in ("l2", "norm"):
        act.grad = None
        loss_value(act, mode).sum().backward()
        grads[mode] = act.grad[0, :, 0, 0].clone()
    assert grads["l2"][0] / grads["l2"][1] == pytest.approx(100.0)
    assert grads["norm"][0] / grads["norm"][1] == pytest.approx(1.0)


def test_unknown_mode_names_close_matches_and_the_list():
    with pytest.raises(InvalidParameterError, match=r"Did you mean: 'norm'.*l2, mean, norm, abs_mean, abs_l2, mse, bce"):
        parse_objective("a@nrom")
    with pytest.raises(InvalidParameterError, match="Unknown loss mode"):
        layer("a", loss="huber")
