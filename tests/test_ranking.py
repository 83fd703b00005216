"""Ranked channel picks on real activations (dream_core.ranking): the offline model on the shared photos
(multi-scale textures where they are absent)."""

import pytest
import torch

from conftest import SHARED_DATA, multiscale_texture
from dream_core import DreamSettings, FeatureHooks, dream_image, parse_objective, strongest_channels
from dream_core.image_io import load_image
from dream_core.objectives import LayerObjective
from dream_core import ranking
from dream_core.image_ops import fit_max_side
from dream_core.ranking import ChannelRanks, bind_ranks, layer_means

LAYER = "block10_dw"
SETTINGS = DreamSettings(num_octaves=2, num_iterations=3, seed=1)


def picture(name: str, seed: int) -> torch.Tensor:
    """A shared photo shrunk to 128 px, or (where ../shared/data is absent) a multi-scale texture."""
    path = SHARED_DATA / name
    return load_image(path, max_side=128) if path.is_file() else multiscale_texture(96, 128, seed=seed)


@pytest.fixture(scope="module")
def photo():
    return picture("golden_gate.jpg", 1)


@pytest.fixture(scope="module")
def other_photo():
    return picture("tubingen.jpg", 2)


def direct_means(model, image, name, optimize=True):
    """The layer's channel means straight from its features: [C] (mean over positions; batch of one)."""
    with torch.no_grad(), FeatureHooks(model, [name], optimize=optimize) as hooks:
        act = hooks.run(image.clone())[name]
    return act[0].mean(dim=(1, 2)).tolist()


def picked(objective):
    assert isinstance(objective, LayerObjective) and objective.rank is None
    return list(objective.channels)


@pytest.mark.parametrize("name", [LAYER, "block10"])  # block10 has no ReLU: negative means, no ties at 0
def test_ranked_channels_equal_a_direct_sort_of_the_channel_means(lite0, photo, name):
    means = direct_means(lite0, photo, name)
    ascending = sorted(range(len(means)), key=lambda c: means[c])  # Python's sort is stable: ties by index
    descending = sorted(range(len(means)), key=lambda c: -means[c])
    middle = (len(means) - 16) // 2
    for text, expected in ((f"{name}:strong8", descending[:8]), (f"{name}:weak4", ascending[:4]),
                           (f"{name}:avg16", ascending[middle:middle + 16])):
        assert picked(bind_ranks(lite0, parse_objective(text, lite0), photo)) == expected, text


def test_strong_and_weak_produce_different_dreams(lite0, photo):
    strong = dream_image(lite0, photo, f"{LAYER}:strong8", SETTINGS)
    weak = dream_image(lite0, photo, f"{LAYER}:weak8", SETTINGS)
    changed = [(d - photo).abs().mean().item() for d in (strong, weak)]
    assert min(changed) > 0.005, changed  # both dream
    assert (strong - weak).abs().mean().item() > 0.01
    again = dream_image(lite0, photo, parse_objective(f"{LAYER}:strong8"), SETTINGS)
    assert torch.equal(again, strong)  # ranked on the picture, then a dream of those listed channels


def test_a_ranked_dream_is_a_dream_of_the_ranked_channels(lite0, photo):
    chans = picked(bind_ranks(lite0, parse_objective(f"{LAYER}:strong8@norm"), photo))
    listed = dream_image(lite0, photo, f"{LAYER}:[{','.join(map(str, chans))}]@norm", SETTINGS)
    assert torch.equal(dream_image(lite0, photo, f"{LAYER}:strong8@norm", SETTINGS), listed)


def test_one_objective_object_is_ranked_on_each_image_it_dreams(lite0, photo, other_photo):
    """A single image keeps no ranking: the same object (a cached node output) ranks each new picture anew."""
    obj = parse_objective(f"{LAYER}:strong8")
    first, second = (picked(bind_ranks(lite0, obj, img)) for img in (photo, other_photo))
    assert first != second
    assert obj.to_string() == f"{LAYER}:strong8"  # the object itself is unchanged


def test_a_clip_memory_keeps_the_first_ranking_and_frame_picks_rerank(lite0, photo, other_photo):
    ranks = ChannelRanks()
    clip = parse_objective(f"{LAYER}:strong8, {LAYER}:weak4/frame")
    on_first = bind_ranks(lite0, clip, photo, ranks)
    on_second = bind_ranks(lite0, clip, other_photo, ranks)
    assert picked(on_first.terms[0]) == picked(on_second.terms[0]) == list(dict(ranks.items())[f"{LAYER}:strong8"])
    assert picked(on_second.terms[1]) == picked(bind_ranks(lite0, parse_objective(f"{LAYER}:weak4"), other_photo))
    assert len(ranks) == 1  # /frame picks are not kept
    step = parse_objective(f"{LAYER}:strong8/step")
    assert bind_ranks(lite0, step, photo, ranks) is step  # ranked at every step, on the step's features
    mixed = bind_ranks(lite0, parse_objective(f"{LAYER}:strong8, {LAYER}:weak4/step"), photo)
    assert mixed.terms[0].rank is None and mixed.terms[1] == parse_objective(f"{LAYER}:weak4/step")


def test_large_pictures_are_ranked_shrunk(lite0, photo, monkeypatch):
    monkeypatch.setattr(ranking, "RANK_MAX_SIDE", 64)  # pictures above 64 px are shrunk to fit 64 first
    assert max(photo.shape[-2:]) > 64
    shrunk = fit_max_side(photo, 64)
    assert torch.equal(layer_means(lite0, photo, [LAYER])[LAYER], layer_means(lite0, shrunk, [LAYER])[LAYER])
    assert not torch.allclose(layer_means(lite0, photo[..., :64, :64], [LAYER])[LAYER],
                              layer_means(lite0, shrunk, [LAYER])[LAYER])


def test_the_listing_gives_the_strongest_channels_with_their_means(lite0, photo):
    listing = strongest_channels(lite0, photo, top=5, layers=[LAYER, "block10"])
    for name in (LAYER, "block10"):
        means = direct_means(lite0, photo, name, optimize=False)
        assert [c for c, _ in listing[name]] == sorted(range(len(means)), key=lambda c: -means[c])[:5]
        assert [m for _, m in listing[name]] == pytest.approx([means[c] for c, _ in listing[name]], abs=1e-5)
