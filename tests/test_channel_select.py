"""Channel selections in the shorthand (dream_core.channel_select): ranked picks, all-but, and the old forms."""

import pytest
import torch

from dream_core import all_but, channel, parse_objective, ranked
from dream_core.channel_select import Rank, rank_order
from dream_core.errors import ChannelOutOfRangeError, InvalidParameterError, ObjectiveSyntaxError
from dream_core.objectives import LayerObjective, ScaledObjective, SumObjective

#: Shorthands written before ranked picks existed, and the terms they have always parsed to.
OLD = [
    ("block10_dw", [LayerObjective("block10_dw")]),
    ("block8:12, block11", [LayerObjective("block8", (12,)), LayerObjective("block11")]),
    ("block8:10-13", [LayerObjective("block8", (10, 11, 12, 13))]),
    ("block8:[1,3,4,5,9]", [LayerObjective("block8", (1, 3, 4, 5, 9))]),
    ("inception_4c/output + layer3.0:2", [LayerObjective("inception_4c/output"), LayerObjective("layer3.0", (2,))]),
    ("a : [ 3 , 7 ]", [LayerObjective("a", (3, 7))]),
]


@pytest.mark.parametrize("text, terms", OLD)
def test_old_objective_strings_parse_as_before(text, terms):
    obj = parse_objective(text)
    got = list(obj.terms) if isinstance(obj, SumObjective) else [obj]
    assert got == terms
    assert all(t.loss == "l2" and t.rank is None and not t.exclude for t in got)


@pytest.mark.parametrize("text, expected", [
    ("block10_dw:strong8", "block10_dw:strong8"),
    ("inception_4c/output:weak4", "inception_4c/output:weak4"),
    ("block8_dw:avg16", "block8_dw:avg16"),
    ("block10_dw:![3,7]", "block10_dw:![3,7]"),
    ("block10_dw:!5", "block10_dw:!5"),
    ("block10_dw:! 10-20", "block10_dw:!10-20"),
    ("block10_dw:strong8/clip", "block10_dw:strong8"),
    ("block10_dw:STRONG8 / Frame", "block10_dw:strong8/frame"),
    ("block10_dw:weak4/once, block8_dw:avg2/iter", "block10_dw:weak4, block8_dw:avg2/step"),
    ("0.5*block10_dw:strong3@norm + block8_dw@abs_mean", "0.5*block10_dw:strong3@norm, block8_dw@abs_mean"),
    ("block10_dw:[3,7] @ bce", "block10_dw:[3,7]@bce"),
])
def test_new_forms_round_trip(text, expected):
    obj = parse_objective(text)
    assert obj.to_string() == expected
    assert parse_objective(expected).to_string() == expected


def test_structure_and_the_python_api_agree():
    obj = parse_objective("0.5*a:strong8/step@norm, b:![3,7]")
    first, second = obj.terms
    assert isinstance(first, ScaledObjective) and first.inner == LayerObjective("a", rank=Rank("strong", 8, "step"),
                                                                                   loss="norm")
    assert second == LayerObjective("b", (3, 7), exclude=True)
    assert (0.5 * ranked("a", "strong", 8, capture="step", loss="norm") + all_but("b", [3, 7])).to_string() == \
        obj.to_string()


@pytest.mark.parametrize("text, words", [
    ("a:strongest8", ["Did you mean: 'strong'", "strong8, avg16, weak4", "![3,7]"]),
    ("a:best8", ["one index (12)", "strong8"]),
    ("a:strong", ["at least 1", "'strong8'"]),
    ("a:weak0", ["at least 1", "'weak8'"]),
    ("a:strong8/later", ["/clip", "/frame", "/step"]),
    ("a:!", ["No channels"]),
    ("a:!x", ["Cannot read channels 'x'", "all but some"]),
])
def test_unreadable_selections_name_the_accepted_forms(text, words):
    with pytest.raises(ObjectiveSyntaxError) as info:
        parse_objective(text)
    for word in words:
        assert word in str(info.value)
    assert info.value.parameter == "objective"


def test_counts_are_bounded_by_the_layer(tiny_model):
    parse_objective("conv2:strong16", tiny_model)  # all 16 channels of conv2: fine
    with pytest.raises(ChannelOutOfRangeError, match=r"has 16 channels; 'avg17' asks for 17. Pick from 1 to 16"):
        parse_objective("conv2:avg17", tiny_model)
    with pytest.raises(ChannelOutOfRangeError, match="more channels than any layer"):
        parse_objective("conv2:strong99999999999")
    with pytest.raises(InvalidParameterError, match="whole number of channels"):
        ranked("conv2", "weak", 0)


def test_all_but_is_checked_against_the_layer(tiny_model):
    with pytest.raises(ChannelOutOfRangeError, match=r"channels 0\.\.15; cannot leave out 16"):
        parse_objective("conv2:![3,16]", tiny_model)
    with pytest.raises(ChannelOutOfRangeError, match="leaves out all 16 channels"):
        parse_objective("conv2:!0-15", tiny_model)
    with pytest.raises(InvalidParameterError, match="not both"):
        LayerObjective("a", (1,), rank=Rank("strong", 2))


def test_all_but_reads_every_other_channel():
    act = torch.randn(2, 6, 3, 3)
    got = all_but("a", [1, 4])({"a": act})
    assert torch.allclose(got, act[:, [0, 2, 3, 5]].pow(2).mean(dim=(1, 2, 3)))
    assert torch.allclose(got, all_but("a", [1, 4])({"a": act}))  # the cached index gives the same
    assert not torch.allclose(got, channel("a", [0, 2, 3, 5, 1])({"a": act}))


def test_rank_order_follows_the_convention():
    means = torch.tensor([0.5, 3.0, -1.0, 3.0, 0.0, 2.0, 0.0, 1.0])
    # ascending (stable): 2(-1) 4(0) 6(0) 0(.5) 7(1) 5(2) 1(3) 3(3)
    assert rank_order(means, Rank("strong", 3)).tolist() == [1, 3, 5]  # equal means: lower index first
    assert rank_order(means, Rank("weak", 3)).tolist() == [2, 4, 6]
    assert rank_order(means, Rank("avg", 2)).tolist() == [0, 7]  # from (8 - 2) // 2 = 3 of the ascending order
    assert rank_order(means, Rank("avg", 8)).tolist() == [2, 4, 6, 0, 7, 5, 1, 3]
    with pytest.raises(ChannelOutOfRangeError, match="has 8 channels"):
        rank_order(means, Rank("strong", 9), "a")


def test_many_equal_means_keep_the_lower_index_first():
    """A ReLU layer has many silent channels (mean 0): the pick among them must not depend on the sort."""
    means = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(0)).float()
    values = means.tolist()
    ascending = sorted(range(200), key=lambda c: values[c])
    descending = sorted(range(200), key=lambda c: -values[c])
    assert rank_order(means, Rank("weak", 50)).tolist() == ascending[:50]
    assert rank_order(means, Rank("strong", 50)).tolist() == descending[:50]
    assert rank_order(means, Rank("avg", 50)).tolist() == ascending[75:125]


def test_a_ranked_term_called_on_features_ranks_on_them():
    """What /step does every gradient step (and any unbound ranked term): rank on the features it is given."""
    act = torch.randn(1, 10, 4, 4)
    act[:, 7] += 5.0
    act[:, 2] += 3.0
    got = parse_objective("a:strong2")({"a": act})
    assert torch.allclose(got, act[:, [7, 2]].pow(2).mean(dim=(1, 2, 3)))
    weak = parse_objective("a:weak1/step@mean")({"a": act})
    lowest = int(act.mean(dim=(0, 2, 3)).argmin())
    assert torch.allclose(weak, act[:, lowest].mean().view(1))
