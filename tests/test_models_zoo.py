"""torchvision zoo models and BVLC GoogLeNet: offline build, layers, truncation, weight files.

Every network here is built with random weights (no download); inputs are
``1x3xSxS`` at the spec's ``min_size`` so the suite stays fast on a CPU.
"""

from __future__ import annotations

import dataclasses
import urllib.error
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dream_core.errors import WeightsError
from dream_core.features import FeatureHooks, count_hooks
from dream_core.models import DreamModel, get_spec, list_models, load_model
from dream_core.models import bvlc_googlenet as bvlc
from dream_core.models import torchvision_models as tvm

TORCHVISION = ["googlenet", "inception_v3", "vgg16", "vgg19", "resnet50"]
ALL = TORCHVISION + ["bvlc_googlenet"]

# Module that runs last in each network's forward (its call count shows whether truncation worked).
HEAD = {
    "googlenet": "fc",
    "inception_v3": "fc",
    "vgg16": "classifier",
    "vgg19": "classifier",
    "resnet50": "fc",
    "bvlc_googlenet": "pool5_7x7_s1",
}

# A few channel counts known from the papers / Caffe prototxt.
CHANNELS = {
    "googlenet": {"conv1": 64, "inception3b": 480, "inception4c": 512, "inception5b": 1024},
    "inception_v3": {"Conv2d_1a_3x3": 32, "Mixed_5b": 256, "mixed5": 768, "Mixed_6c": 768, "Mixed_7c": 2048},
    "vgg16": {"conv1_1": 64, "relu3_3": 256, "relu4_3": 512, "pool5": 512},
    "vgg19": {"conv1_1": 64, "relu3_4": 256, "relu4_4": 512, "relu5_4": 512},
    "resnet50": {"conv1": 64, "layer1": 256, "layer3.0": 1024, "layer3": 1024, "layer4": 2048},
    "bvlc_googlenet": {
        "conv1/7x7_s2": 64,
        "conv2/3x3": 192,
        "inception_3b/5x5_reduce": 32,
        "inception_3b/output": 480,
        "inception_4c/output": 512,
        "inception_4d/3x3_reduce": 144,
        "inception_4d_3x3_reduce": 144,
        "inception_4e/output": 832,
        "inception_5b/output": 1024,
    },
}


def _no_download(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Make any torchvision/torch.hub download fail, so a hidden download cannot pass a test."""
    import torch.hub
    import torchvision.models._api as tv_api

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "load_state_dict_from_url", _no_download)
        mp.setattr(tv_api, "load_state_dict_from_url", _no_download)
        yield


@pytest.fixture(scope="module")
def models(offline: None) -> dict[str, DreamModel]:
    """Each model built once with random weights, wrapped like load_model does (lazily)."""
    return _LazyModels()


class _LazyModels(dict):
    def __missing__(self, name: str) -> DreamModel:
        torch.manual_seed(0)
        spec = get_spec(name)
        model = DreamModel(spec, spec.build(), "random init")
        self[name] = model
        return model


def _probe(model: DreamModel, size: int | None = None) -> torch.Tensor:
    size = size or model.spec.min_size
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _count_calls(module: nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    return calls, module.register_forward_hook(hook)


# --- registry and specs ---------------------------------------------------------------------


def test_registered_in_order() -> None:
    names = list_models()
    for name in ALL:
        assert name in names
    assert names.index("bvlc_googlenet") > names.index("resnet50")


@pytest.mark.parametrize("name", ALL)
def test_spec_is_consistent(name: str) -> None:
    spec = get_spec(name)
    assert spec.default_objective in spec.layers
    assert spec.min_size >= 32
    assert spec.weights_hint
    assert spec.offline is False
    assert len(set(spec.layers)) == len(spec.layers)


def test_weight_urls_match_torchvision_enums() -> None:
    import torchvision.models as models

    for (enum_name, member), url in tvm.WEIGHT_URLS.items():
        assert getattr(getattr(models, enum_name), member).url == url
    for name in TORCHVISION:
        assert "https://download.pytorch.org/models/" in get_spec(name).weights_hint
        assert ".safetensors" in get_spec(name).weights_hint


# --- layers and features --------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_layer_gives_a_feature_map_at_min_size(models: dict[str, DreamModel], name: str) -> None:
    model = models[name]
    for layer in model.layer_names:
        assert isinstance(model.module_for(layer), nn.Module)
    with torch.no_grad(), FeatureHooks(model, model.layer_names) as hooks:
        feats = hooks.run(_probe(model))
    assert list(feats) == model.layer_names
    for layer, feat in feats.items():
        assert feat.dim() == 4 and feat.shape[0] == 1, (layer, feat.shape)
        assert feat.shape[1] >= 1 and feat.shape[2] >= 1 and feat.shape[3] >= 1, (layer, feat.shape)
    for layer, channels in CHANNELS[name].items():
        assert feats[layer].shape[1] == channels, layer
    assert count_hooks(model.net) == 0


@pytest.mark.parametrize("name", ["inception_v3", "vgg16"])
def test_min_size_is_tight_where_the_network_sets_it(models: dict[str, DreamModel], name: str) -> None:
    model = models[name]
    with pytest.raises(RuntimeError), torch.no_grad():
        model.net(model.normalize(_probe(model, model.spec.min_size - 1)))


def test_inception_v3_keras_aliases_follow_their_block(models: dict[str, DreamModel]) -> None:
    spec = get_spec("inception_v3")
    mixed = [n for n in spec.layers if n.startswith("Mixed_")]
    assert [spec.layers[f"mixed{i}"] for i in range(11)] == mixed
    names = spec.layer_names
    for i, block in enumerate(mixed):
        assert names.index(f"mixed{i}") == names.index(block) + 1
    assert spec.layers["mixed3"] == "Mixed_6a" and spec.layers["mixed5"] == "Mixed_6c"


@pytest.mark.parametrize("name,stages", [("vgg16", (2, 2, 3, 3, 3)), ("vgg19", (2, 2, 4, 4, 4))])
def test_vgg_names_point_at_the_right_modules(models: dict[str, DreamModel], name: str, stages: tuple) -> None:
    model = models[name]
    expected_len = sum(2 * n + 1 for n in stages)
    assert len(model.spec.layers) == expected_len == len(model.net.features)
    for layer in model.layer_names:
        module = model.module_for(layer)
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[layer[:4]]
        assert isinstance(module, kind), layer
    assert model.spec.layers["relu1_1"] == "features.1"
    assert model.spec.layers["pool5"] == f"features.{expected_len - 1}"
    if name == "vgg16":
        assert model.spec.layers["relu4_3"] == "features.22"


@pytest.mark.parametrize("name,pre,post", [("vgg16", "conv4_3", "relu4_3"),
                                           ("bvlc_googlenet", "inception_4d_3x3_reduce", "inception_4d/3x3_reduce"),
                                           ("bvlc_googlenet", "conv1_7x7_s2", "conv1/7x7_s2")])
def test_pre_relu_features_are_not_overwritten(models: dict[str, DreamModel], name: str, pre: str, post: str) -> None:
    """A captured convolution output stays pre-ReLU (no in-place ReLU rewrites it)."""
    model = models[name]
    with torch.no_grad(), FeatureHooks(model, [pre, post]) as hooks:
        feats = hooks.run(_probe(model, 64))
    assert (feats[pre] < 0).any()
    torch.testing.assert_close(feats[post], feats[pre].clamp_min(0))


@pytest.mark.parametrize("name", ALL)
def test_forward_is_truncated_after_the_deepest_requested_layer(models: dict[str, DreamModel], name: str) -> None:
    model = models[name]
    calls, handle = _count_calls(model.net.get_submodule(HEAD[name]))
    try:
        with torch.no_grad():
            with FeatureHooks(model, [model.spec.default_objective]) as hooks:
                hooks.run(_probe(model))
            assert calls[0] == 0
            with FeatureHooks(model, [model.spec.default_objective], truncate=False) as hooks:
                hooks.run(_probe(model))
            assert calls[0] == 1
    finally:
        handle.remove()


# --- weight files ---------------------------------------------------------------------------


@pytest.fixture
def reuse_built(models: dict[str, DreamModel], monkeypatch: pytest.MonkeyPatch):
    """Make load_model reuse the already-built network of a model (for tests that fail before loading).

    Building VGG costs seconds; tests whose load_model call must fail before any
    weight is copied exercise the same registry path with the cached network.
    """
    from dream_core.models import registry

    def use(name: str) -> None:
        spec = get_spec(name)
        net = models[name].net
        monkeypatch.setitem(registry._registry(), name, dataclasses.replace(spec, build=lambda: net))

    return use


def _save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


def _assert_same_weights(net: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    own = net.state_dict()
    assert set(own) <= set(sd)
    for key, value in own.items():
        assert torch.equal(value, sd[key]), key


# VGG files are ~0.5 GB: one format each keeps the suite fast; the small models do both.
ROUNDTRIPS = [(n, ext) for n in ALL for ext in (".pth", ".safetensors")
              if not (n == "vgg16" and ext == ".safetensors") and not (n == "vgg19" and ext == ".pth")]


@pytest.mark.parametrize("name,ext", ROUNDTRIPS)
def test_saved_state_dict_loads_back(models: dict[str, DreamModel], tmp_path: Path, name: str, ext: str) -> None:
    sd = models[name].net.state_dict()
    path = _save(sd, tmp_path / f"{name}{ext}")
    loaded = load_model(name, weights=path)
    assert loaded.weights_source == str(path)
    _assert_same_weights(loaded.net, sd)
    assert not any(p.requires_grad for p in loaded.net.parameters())


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_full_torchvision_checkpoint_with_aux_heads_loads(offline: None, tmp_path: Path, name: str) -> None:
    import torchvision.models as models

    full = getattr(models, name)(weights=None, aux_logits=True, init_weights=False).state_dict()
    aux = [k for k in full if k.startswith(("aux1.", "aux2.", "AuxLogits."))]
    assert aux
    loaded = load_model(name, weights=_save(full, tmp_path / f"{name}_full.pth"))
    _assert_same_weights(loaded.net, full)


@pytest.fixture(scope="module")
def foreign_files(offline: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small state dict of another architecture: BVLC GoogLeNet's, and torchvision GoogLeNet's for BVLC."""
    root = tmp_path_factory.mktemp("foreign")
    return {
        "bvlc": _save(bvlc.BVLCGoogLeNet().state_dict(), root / "bvlc_googlenet.pth"),
        "googlenet": _save(get_spec("googlenet").build().state_dict(), root / "googlenet.pth"),
    }


@pytest.mark.parametrize("name", ALL)
def test_state_dict_of_another_architecture_is_refused(foreign_files: dict[str, Path], reuse_built, name: str) -> None:
    reuse_built(name)
    path = foreign_files["googlenet" if name == "bvlc_googlenet" else "bvlc"]
    with pytest.raises(WeightsError) as err:
        load_model(name, weights=path)
    assert str(path) in str(err.value) and name in str(err.value)


@pytest.mark.parametrize("name", TORCHVISION)
def test_default_weights_offline_give_weights_error(offline: None, reuse_built, name: str) -> None:
    reuse_built(name)
    with pytest.raises(WeightsError) as err:
        load_model(name)
    message = str(err.value)
    assert "network disabled in tests" in message
    assert "https://download.pytorch.org/models/" in message and "weights file" in message


def test_default_weights_use_the_weights_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models._api import WeightsEnum

    seen = []

    def fake(self: WeightsEnum, *args: object, **kwargs: object) -> dict:
        seen.append((type(self).__name__, self.name, kwargs))
        return {}

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake)
    for name in TORCHVISION:
        assert get_spec(name).load_default_weights() == {}
    assert [s[:2] for s in seen] == [
        ("GoogLeNet_Weights", "IMAGENET1K_V1"),
        ("Inception_V3_Weights", "IMAGENET1K_V1"),
        ("VGG16_Weights", "IMAGENET1K_V1"),
        ("VGG19_Weights", "IMAGENET1K_V1"),
        ("ResNet50_Weights", "IMAGENET1K_V1"),
    ]
    assert all(s[2].get("weights_only") is True for s in seen)


# --- BVLC GoogLeNet specifics ---------------------------------------------------------------

# Key facts of neural-dream's models/bvlc_googlenet.pth (converted by ProGamerGov/pytorch-old-caffemodels).
BVLC_KNOWN_SHAPES = {
    "conv1_7x7_s2.weight": (64, 3, 7, 7),
    "conv2_3x3_reduce.weight": (64, 64, 1, 1),
    "conv2_3x3.weight": (192, 64, 3, 3),
    "inception_3a_1x1.weight": (64, 192, 1, 1),
    "inception_3a_5x5_reduce.weight": (16, 192, 1, 1),
    "inception_3b_5x5.weight": (96, 32, 5, 5),
    "inception_4c_1x1.weight": (128, 512, 1, 1),
    "inception_4d_3x3_reduce.weight": (144, 512, 1, 1),
    "inception_4e_pool_proj.weight": (128, 528, 1, 1),
    "inception_5b_3x3.weight": (384, 192, 3, 3),
    "inception_5b_pool_proj.bias": (128,),
}
# Auxiliary heads present in that file (dropped before loading).
BVLC_AUX_SHAPES = {
    "loss1_conv.weight": (128, 512, 1, 1), "loss1_conv.bias": (128,),
    "loss1_fc_1.weight": (1024, 2048), "loss1_fc_1.bias": (1024,),
    "loss1_classifier_1.weight": (1000, 1024), "loss1_classifier_1.bias": (1000,),
    "loss2_conv.weight": (128, 528, 1, 1), "loss2_conv.bias": (128,),
    "loss2_fc_1.weight": (1024, 2048), "loss2_fc_1.bias": (1024,),
    "loss2_classifier_1.weight": (1000, 1024), "loss2_classifier_1.bias": (1000,),
}


def _bvlc_expected_keys() -> set[str]:
    convs = ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        convs += [f"inception_{block}_{c}" for c in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")]
    return {f"{c}.{p}" for c in convs for p in ("weight", "bias")}


def test_bvlc_state_dict_keys_match_the_converted_caffe_model() -> None:
    sd = bvlc.BVLCGoogLeNet().state_dict()
    assert set(sd) == _bvlc_expected_keys()
    assert len(sd) == 114
    for key, shape in BVLC_KNOWN_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key


def test_bvlc_file_like_neural_dreams_loads(models: dict[str, DreamModel], tmp_path: Path) -> None:
    """neural-dream's file also holds loss1_*/loss2_* heads; they are dropped, the rest loads strictly."""
    sd = dict(models["bvlc_googlenet"].net.state_dict())
    for key, shape in BVLC_AUX_SHAPES.items():
        sd[key] = torch.randn(shape)
    loaded = load_model("bvlc_googlenet", weights=_save(sd, tmp_path / "bvlc_googlenet.pth"))
    _assert_same_weights(loaded.net, sd)


def test_bvlc_caffe_style_keys_are_accepted(models: dict[str, DreamModel], tmp_path: Path) -> None:
    sd = models["bvlc_googlenet"].net.state_dict()
    caffe = {k.replace("conv1_7x7", "conv1/7x7").replace("inception_3a_", "inception_3a/"): v for k, v in sd.items()}
    assert "inception_3a/1x1.weight" in caffe
    loaded = load_model("bvlc_googlenet", weights=_save(caffe, tmp_path / "caffe_names.pth"))
    _assert_same_weights(loaded.net, sd)


def test_bvlc_without_weights_says_where_to_get_them() -> None:
    with pytest.raises(WeightsError, match="bvlc_googlenet.pth") as err:
        load_model("bvlc_googlenet")
    assert "weights=" in str(err.value) and "pytorch-old-caffemodels" in str(err.value)
    assert err.value.parameter == "weights"


def test_bvlc_layer_names_follow_caffe() -> None:
    spec = get_spec("bvlc_googlenet")
    assert spec.default_objective == "inception_4c/output"
    for layer in ("conv1/7x7_s2", "pool1/3x3_s2", "conv2/3x3", "inception_3a/output", "inception_3b/5x5_reduce",
                  "inception_4a/output", "inception_4c/output", "inception_4d/3x3_reduce", "inception_5b/output",
                  "inception_4e/pool_proj", "inception_5a/5x5", "inception_4b/1x1", "inception_4d_3x3_reduce"):
        assert layer in spec.layers, layer
    names = spec.layer_names
    blocks = [n for n in names if n.endswith("/output")]
    assert blocks == [f"inception_{b}/output" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert names.index("pool3/3x3_s2") == names.index("inception_3b/output") + 1
    assert names.index("pool4/3x3_s2") == names.index("inception_4e/output") + 1
    assert spec.extra["seed_default_layer"] in spec.layers


def test_bvlc_normalization_is_caffe_bgr_mean() -> None:
    norm = get_spec("bvlc_googlenet").normalization
    image = torch.zeros(1, 3, 2, 2)
    image[:, 0] = 1.0  # pure red
    x = norm.apply(image)
    # channel 0 is blue: 0 - 104; channel 2 is red: 255 - 123
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-104.0, -117.0, 132.0]))


def test_caffe_ceil_pooling_equals_right_bottom_padding() -> None:
    """Caffe's ceil-mode 3x3/2 pool equals a floor-mode pool after one -inf row/column (the converter's form)."""
    pool = bvlc.BVLCGoogLeNet().pool1_3x3_s2
    for h in range(5, 16):
        x = torch.randn(1, 2, h, h + 1)
        ref = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        assert torch.equal(pool(x), ref), h


def test_bvlc_channels_probe(models: dict[str, DreamModel]) -> None:
    assert models["bvlc_googlenet"].channels("inception_4c/output") == 512


def test_weights_holding_nan_are_refused(tmp_path: Path, lite0: DreamModel) -> None:
    # A weights file of NaNs used to load and dream a black image.
    state = {k: v.clone() for k, v in lite0.net.state_dict().items()}
    state["_conv_stem.weight"].fill_(float("nan"))
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"NaN or infinite values in 1 tensors \(e.g. _conv_stem.weight\)") as info:
        load_model("efficientnet_lite0", weights=path)
    assert info.value.parameter == "weights"
    state["_conv_stem.weight"] = lite0.net.state_dict()["_conv_stem.weight"]
    torch.save(state, path)
    assert load_model("efficientnet_lite0", weights=path).net.state_dict()["_conv_stem.weight"].isfinite().all()
