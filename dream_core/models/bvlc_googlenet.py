"""BVLC GoogLeNet (Caffe), the original tool's model, with the converted checkpoint's key names.

The original tool (zhuyuezx/neural-dream, a fork of ProGamerGov/neural-dream)
loads ``models/bvlc_googlenet.pth``: the BVLC Caffe model converted to a
PyTorch state dict by ProGamerGov/pytorch-old-caffemodels. Facts about that
file, from those projects' model classes (this file is our own code):

* One flat module per Caffe convolution, named after the Caffe layer with
  ``/`` replaced by ``_``: ``conv1_7x7_s2``, ``conv2_3x3_reduce``, ``conv2_3x3``
  and, for each block ``3a 3b 4a 4b 4c 4d 4e 5a 5b``, ``inception_<b>_1x1``,
  ``_3x3_reduce``, ``_3x3``, ``_5x5_reduce``, ``_5x5``, ``_pool_proj``; each
  has ``.weight`` and ``.bias`` (no batch norm).
* The file also holds the auxiliary heads ``loss1_conv``, ``loss1_fc_1``,
  ``loss1_classifier_1``, ``loss2_conv``, ``loss2_fc_1``,
  ``loss2_classifier_1`` (unused when dreaming, dropped before loading) and
  no final ``loss3/classifier``.
* Caffe layout: 7x7/2 convolution padded by 3, 3x3 convolutions padded by 1,
  5x5 by 2; stride-2 3x3 max pools in Caffe's ceil mode; local response
  normalisation (size 5, alpha 1e-4, beta 0.75, k 1) after ``pool1`` and
  ``conv2/3x3``; inception pools are 3x3 stride 1 padded by 1; every
  convolution is followed by a ReLU; block outputs concatenate
  ``[1x1, 3x3, 5x5, pool_proj]`` along channels.
* Input: BGR in ``0..255`` minus the ImageNet mean. BVLC's mean is
  ``(B, G, R) = (104, 117, 123)``; neural-dream subtracts
  ``(103.939, 116.779, 123.68)`` after scaling by 256; the original tool
  (SEED) subtracts nothing (it removed the mean so its tensor can be diffed
  with video frames). ``spec.extra["seed_normalization"]`` keeps SEED's.

Layer names. Caffe blob names with ``/`` (``inception_4c/output``,
``inception_3b/5x5_reduce``, ``conv2/3x3`` ...) read the *post-ReLU* value, as
Caffe's in-place ReLU leaves it in the blob (what Google's DeepDream notebook
dreams on). neural-dream's names with ``_`` for convolutions
(``inception_4d_3x3_reduce``, the original tool's default) read the raw
convolution output *before* the ReLU, as neural-dream hooks the convolution
module; they are listed right before their ``/`` twin.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import InputNormalization, ModelSpec, StateDict

DOWNLOAD_URL = "https://github.com/ProGamerGov/pytorch-old-caffemodels/raw/master/bvlc_googlenet.pth"

# (block, in_channels, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj); out = 1x1 + 3x3 + 5x5 + pool_proj.
_INCEPTION: tuple[tuple[str, int, int, int, int, int, int, int], ...] = (
    ("3a", 192, 64, 96, 128, 16, 32, 32),
    ("3b", 256, 128, 128, 192, 32, 96, 64),
    ("4a", 480, 192, 96, 208, 16, 48, 64),
    ("4b", 512, 160, 112, 224, 24, 64, 64),
    ("4c", 512, 128, 128, 256, 24, 64, 64),
    ("4d", 512, 112, 144, 288, 32, 64, 64),
    ("4e", 528, 256, 160, 320, 32, 128, 128),
    ("5a", 832, 256, 160, 320, 32, 128, 128),
    ("5b", 832, 384, 192, 384, 48, 128, 128),
)
# A stride-2 max pool follows these blocks.
_POOL_AFTER = {"3b": "pool3_3x3_s2", "4e": "pool4_3x3_s2"}

# Branch convolutions of a block, in execution order (keys of the converted file are inception_<b>_<name>).
_BRANCH_CONVS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")

# Keys of the converted file that the dreamable network does not use.
_UNUSED_PREFIXES = ("loss1_", "loss2_", "loss3_")


def _caffe_pool() -> nn.MaxPool2d:
    """3x3 stride-2 max pool, Caffe rounding (output ``ceil((H - 3) / 2) + 1``)."""
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


def _lrn() -> nn.LocalResponseNorm:
    """Caffe ``LRN`` across 5 channels: ``x / (1 + 1e-4 / 5 * sum x^2) ** 0.75``."""
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class BVLCGoogLeNet(nn.Module):
    """GoogLeNet as trained in Caffe by BVLC, up to the global average pool.

    Input ``[B, 3, H, W]``: BGR, ``0..255``, mean-subtracted. Output
    ``[B, 1024]``: ``inception_5b/output`` averaged over space (the converted
    weights carry no final classifier). Every Caffe blob has its own module so
    that forward hooks can read it: ``<conv>`` (pre-ReLU),
    ``..._relu_...`` (post-ReLU), ``inception_<b>_pool``,
    ``inception_<b>_output`` (the concatenation), stem pools and norms.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.conv1_relu_7x7 = nn.ReLU()
        self.pool1_3x3_s2 = _caffe_pool()
        self.pool1_norm1 = _lrn()
        self.conv2_3x3_reduce = nn.Conv2d(64, 64, 1)
        self.conv2_relu_3x3_reduce = nn.ReLU()
        self.conv2_3x3 = nn.Conv2d(64, 192, 3, padding=1)
        self.conv2_relu_3x3 = nn.ReLU()
        self.conv2_norm2 = _lrn()
        self.pool2_3x3_s2 = _caffe_pool()
        for block, cin, c1, c3r, c3, c5r, c5, cp in _INCEPTION:
            self._add_inception(block, cin, c1, c3r, c3, c5r, c5, cp)
            if block in _POOL_AFTER:
                self.add_module(_POOL_AFTER[block], _caffe_pool())
        self.pool5_7x7_s1 = nn.AdaptiveAvgPool2d(1)

    def _add_inception(self, block: str, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int) -> None:
        p = f"inception_{block}_"
        convs = {
            "1x1": nn.Conv2d(cin, c1, 1),
            "3x3_reduce": nn.Conv2d(cin, c3r, 1),
            "3x3": nn.Conv2d(c3r, c3, 3, padding=1),
            "5x5_reduce": nn.Conv2d(cin, c5r, 1),
            "5x5": nn.Conv2d(c5r, c5, 5, padding=2),
            "pool_proj": nn.Conv2d(cin, cp, 1),
        }
        for name in _BRANCH_CONVS:
            self.add_module(p + name, convs[name])
            self.add_module(p + "relu_" + name, nn.ReLU())
        self.add_module(p + "pool", nn.MaxPool2d(3, stride=1, padding=1))
        self.add_module(p + "output", nn.Identity())

    def _conv_relu(self, prefix: str, name: str, x: torch.Tensor) -> torch.Tensor:
        return self._modules[prefix + "relu_" + name](self._modules[prefix + name](x))

    def _inception(self, block: str, x: torch.Tensor) -> torch.Tensor:
        """One inception block: ``[B, C_in, h, w] -> [B, 1x1 + 3x3 + 5x5 + pool_proj, h, w]``."""
        p = f"inception_{block}_"
        b1 = self._conv_relu(p, "1x1", x)
        b3 = self._conv_relu(p, "3x3", self._conv_relu(p, "3x3_reduce", x))
        b5 = self._conv_relu(p, "5x5", self._conv_relu(p, "5x5_reduce", x))
        bp = self._conv_relu(p, "pool_proj", self._modules[p + "pool"](x))
        return self._modules[p + "output"](torch.cat((b1, b3, b5, bp), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1_norm1(self.pool1_3x3_s2(self.conv1_relu_7x7(self.conv1_7x7_s2(x))))
        x = self.conv2_relu_3x3_reduce(self.conv2_3x3_reduce(x))
        x = self.pool2_3x3_s2(self.conv2_norm2(self.conv2_relu_3x3(self.conv2_3x3(x))))
        for block, *_ in _INCEPTION:
            x = self._inception(block, x)
            if block in _POOL_AFTER:
                x = self._modules[_POOL_AFTER[block]](x)
        return torch.flatten(self.pool5_7x7_s1(x), 1)


def _layers() -> dict[str, str]:
    """Friendly name -> module path, in execution order (see the module docstring for the two name styles)."""
    layers: dict[str, str] = {
        "conv1_7x7_s2": "conv1_7x7_s2",
        "conv1/7x7_s2": "conv1_relu_7x7",
        "pool1/3x3_s2": "pool1_3x3_s2",
        "pool1/norm1": "pool1_norm1",
        "conv2_3x3_reduce": "conv2_3x3_reduce",
        "conv2/3x3_reduce": "conv2_relu_3x3_reduce",
        "conv2_3x3": "conv2_3x3",
        "conv2/3x3": "conv2_relu_3x3",
        "conv2/norm2": "conv2_norm2",
        "pool2/3x3_s2": "pool2_3x3_s2",
    }
    for block, *_ in _INCEPTION:
        p = f"inception_{block}"
        for name in _BRANCH_CONVS:
            if name == "pool_proj":
                layers[f"{p}/pool"] = f"{p}_pool"
            layers[f"{p}_{name}"] = f"{p}_{name}"
            layers[f"{p}/{name}"] = f"{p}_relu_{name}"
        layers[f"{p}/output"] = f"{p}_output"
        if block in _POOL_AFTER:
            pool = _POOL_AFTER[block]
            layers[pool.replace("_3x3", "/3x3")] = pool
    return layers


def convert_state_dict(state_dict: StateDict) -> StateDict:
    """Prepare a BVLC GoogLeNet state dict for strict loading.

    Drops the classifier heads (``loss1_*``, ``loss2_*``, ``loss3_*``) and
    accepts Caffe-style keys (``inception_3a/1x1.weight`` ->
    ``inception_3a_1x1.weight``) as written by some other converters.
    """
    out = {}
    for key, value in state_dict.items():
        key = key.replace("/", "_")
        if not key.startswith(_UNUSED_PREFIXES):
            out[key] = value
    return out


SPECS = [
    ModelSpec(
        name="bvlc_googlenet",
        description="BVLC GoogLeNet (Caffe ImageNet), the original tool's model; needs the user's "
        "bvlc_googlenet.pth (Caffe layer names: inception_4c/output ...)",
        build=BVLCGoogLeNet,
        layers=_layers(),
        normalization=InputNormalization((104.0, 117.0, 123.0), (1.0, 1.0, 1.0), value_scale=255.0, bgr=True),
        default_objective="inception_4c/output",
        min_size=32,
        load_default_weights=None,
        weights_hint=(
            "BVLC GoogLeNet needs the Caffe weights converted to PyTorch, 'bvlc_googlenet.pth' (from "
            f"ProGamerGov/pytorch-old-caffemodels: {DOWNLOAD_URL} ; neural-dream's "
            "'python models/download_models.py -models caffe-googlenet-bvlc' fetches the same file). "
            "Pass it as the weights file (load_model('bvlc_googlenet', weights='path/to/bvlc_googlenet.pth'))."
        ),
        convert_state_dict=convert_state_dict,
        extra={
            "download_url": DOWNLOAD_URL,
            # The original tool's defaults (zhuyuezx/neural-dream): layer inception_4d_3x3_reduce (pre-ReLU),
            # input BGR * 256 without mean subtraction.
            "seed_default_layer": "inception_4d_3x3_reduce",
            "seed_normalization": InputNormalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), value_scale=256.0, bgr=True),
        },
    )
]
