"""The execution copy (dream_core.fastpath): BatchNorm folded, static padding, LRN, channels_last; same features."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import textured_image
from dream_core import DreamSettings, count_hooks, dream_image
from dream_core.fastpath import execution_net
from dream_core.features import FeatureHooks
from dream_core.models import get_spec
from dream_core.models.spec import IMAGENET, DreamModel, ModelSpec

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=3, learning_rate=0.02, jitter=4)


class _SameConv(nn.Conv2d):
    """TensorFlow-"same" convolution that pads in its forward and ignores ``self.bias`` (as ported nets do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        total = max((-(-x.shape[-1] // s) - 1) * s + k - x.shape[-1], 0)
        x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


class _ReflectConv(nn.Conv2d):
    """Pads by reflection in its forward: must not be mistaken for zero "same" padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.weight, self.bias)


class BnNet(nn.Module):
    """conv-BN-ReLU stages: a named conv, a stride-1 and a stride-2 "same" conv that ignore their bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = _SameConv(8, 16, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = _SameConv(16, 16, 3, stride=2, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.act1, self.act2, self.act3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.act3(self.bn3(self.conv3(x)))


def _randomise_bn(net: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


@pytest.fixture
def bn_model() -> DreamModel:
    torch.manual_seed(0)
    spec = ModelSpec(
        name="bn_tiny", description="test net with BatchNorm", build=BnNet,
        layers={"conv1": "conv1", "stage1": "act1", "stage2": "act2", "stage3": "act3"},
        normalization=IMAGENET, default_objective="stage2", min_size=8,
    )
    net = BnNet()
    _randomise_bn(net)
    return DreamModel(spec, net, "random init")


def _features(model: DreamModel, image: torch.Tensor, optimize: bool) -> dict[str, torch.Tensor]:
    with torch.no_grad(), FeatureHooks(model, model.layer_names, truncate=False, optimize=optimize) as hooks:
        return hooks.run(image)


def _layer_feature(model: DreamModel, image: torch.Tensor, layer: str, optimize: bool) -> torch.Tensor:
    """``layer``'s features with the forward truncated there, on the plain network or the execution copy."""
    with torch.no_grad(), FeatureHooks(model, [layer], optimize=optimize) as hooks:
        return hooks.run(image)[layer]


def test_execution_copy_folds_bn_and_keeps_every_feature(bn_model):
    fast = execution_net(bn_model)
    assert fast is not bn_model.net
    kinds = {name: type(m).__name__ for name, m in fast.named_modules()}
    assert kinds["bn1"] == "BatchNorm2d"         # conv1 is a named layer: its raw output must stay
    assert kinds["conv2"] == "Conv2d"            # stride-1 "same": constant padding, plain forward ...
    assert kinds["bn2"] == "Identity"            # ... so its BatchNorm folds into weights and bias
    assert kinds["conv3"] == "_SameConv"         # stride 2: padding depends on the input size, kept
    assert kinds["bn3"] == "ChannelBias"        # its forward ignores self.bias: a bias add is left
    x = textured_image(40, 48)
    plain, opt = _features(bn_model, x, False), _features(bn_model, x, True)
    for name in bn_model.layer_names:
        torch.testing.assert_close(opt[name], plain[name], rtol=1e-4, atol=1e-5)


def test_named_conv_keeps_its_pre_batchnorm_output(bn_model):
    x = textured_image(32, 32)
    torch.testing.assert_close(_features(bn_model, x, True)["conv1"], _features(bn_model, x, False)["conv1"],
                               rtol=1e-4, atol=1e-5)


def test_original_network_is_untouched(bn_model):
    before = {k: v.clone() for k, v in bn_model.net.state_dict().items()}
    calls = []
    handle = bn_model.net.conv1.register_forward_hook(lambda *a: calls.append(1))
    try:
        dream_image(bn_model, textured_image(32, 32), "stage2", FAST)
    finally:
        handle.remove()
    assert calls == []  # neither the probe nor the dream ran model.net
    after = bn_model.net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.is_contiguous() for p in bn_model.net.parameters())


def test_dream_matches_the_plain_network(bn_model):
    x = textured_image(40, 40)
    fast = dream_image(bn_model, x, "stage2", FAST)
    with FeatureHooks(bn_model, ["stage2"], optimize=False) as plain_hooks:
        plain = dream_image(bn_model, x, "stage2", FAST, hooks=plain_hooks)
    assert (fast - plain).abs().mean() < 1e-4


def test_copy_is_rebuilt_when_weights_change(bn_model):
    first = execution_net(bn_model)
    assert execution_net(bn_model) is first
    with torch.no_grad():
        bn_model.net.bn1.running_mean.add_(0.5)
    second = execution_net(bn_model)
    assert second is not first
    x = textured_image(32, 32)
    torch.testing.assert_close(_features(bn_model, x, True)["stage1"], _features(bn_model, x, False)["stage1"],
                               rtol=1e-4, atol=1e-5)


def test_hooks_on_the_copy_are_counted_and_removed(bn_model):
    with FeatureHooks(bn_model, ["stage1", "stage2"], optimize=True) as hooks:
        hooks.run(textured_image(32, 32))
        assert count_hooks(bn_model) == 2
    assert count_hooks(bn_model) == 0


def test_built_inside_inference_mode_still_differentiable(bn_model):
    with torch.inference_mode():
        x = textured_image(32, 32).clone()
        out = dream_image(bn_model, x, "stage2", FAST)
    assert out.shape == x.shape


def _zoo_model(name: str, device: str = "cpu") -> DreamModel:
    """Registered architecture ``name`` with random weights and BatchNorm statistics (nothing downloaded)."""
    spec = get_spec(name)
    torch.manual_seed(0)
    with torch.no_grad():
        net = spec.build()
        _randomise_bn(net)
    return DreamModel(spec, net.to(device), "random init")


@pytest.mark.parametrize("name", ["googlenet", "resnet50", "inception_v3", "efficientnet_lite0"])
def test_zoo_execution_copies_match(name):
    model = _zoo_model(name)
    spec = model.spec
    fast = execution_net(model)
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.net.modules())
    after = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert after <= 1 < before  # resnet50 keeps bn1: its conv1 is a named layer
    size = max(spec.min_size, 80)
    x = textured_image(size, size + 16)
    layer = spec.default_objective
    plain, opt = (_layer_feature(model, x, layer, optimize) for optimize in (False, True))
    assert (opt - plain).abs().max() <= 1e-3 * plain.abs().max()


def test_two_feature_hooks_on_one_network_do_not_interfere(bn_model):
    x = textured_image(32, 32)
    with FeatureHooks(bn_model, ["stage3"], optimize=True) as deep, FeatureHooks(bn_model, ["stage1"], optimize=True) as shallow:
        a = shallow.run(x)["stage1"]
        b = deep.run(x)["stage3"]
    assert a.shape[1] == 8 and b.shape[1] == 16


def test_padding_rewrite_is_refused_when_the_probe_disagrees():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = _ReflectConv(3, 8, 3, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.bn(self.conv(x)))

    torch.manual_seed(0)
    net = Net()
    _randomise_bn(net)
    spec = ModelSpec(name="reflect", description="test", build=Net, layers={"act": "act"}, normalization=IMAGENET,
                     default_objective="act", min_size=8)
    model = DreamModel(spec, net, "random init")
    fast = execution_net(model)
    assert type(fast.conv).__name__ == "_ReflectConv"   # rewrite rejected by the probe ...
    assert type(fast.bn).__name__ == "ChannelBias"     # ... BatchNorm still folded
    x = textured_image(32, 32)
    torch.testing.assert_close(_features(model, x, True)["act"], _features(model, x, False)["act"], rtol=1e-4, atol=1e-5)


def test_bvlc_googlenet_copy_replaces_lrn_and_matches():
    spec = get_spec("bvlc_googlenet")
    torch.manual_seed(0)
    with torch.no_grad():
        model = DreamModel(spec, spec.build(), "random init")
    fast = execution_net(model)
    assert sum(type(m).__name__ == "ChannelWindowLRN" for m in fast.modules()) == 2
    x = textured_image(96, 112)
    layer = spec.default_objective
    plain, opt = (_layer_feature(model, x, layer, optimize) for optimize in (False, True))
    assert (opt - plain).abs().max() <= 1e-3 * plain.abs().max()


def test_copy_checked_under_autocast_is_used_at_that_precision():
    # bfloat16 autocast on the CPU rounds as TF32 does on CUDA, only coarser: the folded copy differs from
    # the original by rounding alone, which the check accepts (a fixed 1e-3 tolerance refused it).
    model = _zoo_model("efficientnet_lite0")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = execution_net(model)
        assert execution_net(model) is fast
    assert fast is not model.net
    assert execution_net(model) is not fast  # checked again at float32: cached per precision


@pytest.mark.parametrize("error", [0.05, 0.5])
def test_a_wrong_copy_is_refused_at_reduced_precision_too(bn_model, error):
    import copy

    from dream_core.fastpath.check import same_features

    wrong = copy.deepcopy(bn_model.net)
    with torch.no_grad():
        wrong.bn2.weight.mul_(1 + error)  # as a BatchNorm folded with a wrong scale would compute
    probe = textured_image(64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert same_features(bn_model, bn_model.net, execution_net(bn_model), probe)
        assert not same_features(bn_model, bn_model.net, wrong, probe)
    assert not same_features(bn_model, bn_model.net, wrong, probe)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["googlenet", "efficientnet_lite0", "bvlc_googlenet"])
def test_execution_copy_on_cuda_matches(name):
    """The copy is used on CUDA, and is as close to exact float32 as the original at the GPU's precision
    (TF32 convolutions unless the host turned them off)."""
    from dream_core.backends import full_precision
    from dream_core.fastpath.check import NOISE_FACTOR

    model = _zoo_model(name, "cuda")
    assert execution_net(model) is not model.net
    x = textured_image(96, 112).to("cuda")
    layer = model.spec.default_objective
    plain, opt = (_layer_feature(model, x, layer, optimize) for optimize in (False, True))
    with full_precision(x.device):
        exact = _layer_feature(model, x, layer, False)
    noise = (plain - exact).abs().max()
    assert (opt - exact).abs().max() <= 2e-3 * exact.abs().max() + NOISE_FACTOR * noise
