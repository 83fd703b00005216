"""torchvision ImageNet classifiers as dreamable models.

Architectures come from :mod:`torchvision.models` built with ``weights=None``
(nothing is downloaded at build time). Default weights are torchvision's
ImageNet checkpoints, fetched through the weights enums
(``GoogLeNet_Weights.IMAGENET1K_V1.get_state_dict(...)``) into the torch hub
cache on first use; offline, :func:`dream_core.models.registry.load_model`
turns the download failure into a :class:`~dream_core.errors.WeightsError`
whose message quotes the URL, so the file can be fetched elsewhere and given
as a weights file.

Conventions that matter for dreaming:

* Input is ImageNet-normalised RGB (:data:`~dream_core.models.spec.IMAGENET`).
  ``googlenet`` and ``inception_v3`` are built with ``transform_input=True``:
  their ImageNet weights were ported from TensorFlow and expect ``[-1, 1]``
  input, which the network derives itself from ImageNet-normalised input.
* The auxiliary classifiers are not built (``aux_logits=False``); their keys
  (``aux1.*``, ``aux2.*``, ``AuxLogits.*``) in full torchvision checkpoints are
  dropped by :func:`drop_aux_keys` before strict loading.
* Every ``nn.ReLU`` is switched to ``inplace=False``. VGG applies its ReLUs in
  place on the convolution output, which would silently turn a captured
  ``convN_M`` feature into ``reluN_M``.
* ``min_size`` is the smallest square input whose deepest listed layer still
  has a ``>= 1x1`` map, and never below 32 (the networks' total stride): a
  smaller octave has nothing left to dream on.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from torch import nn

from .spec import IMAGENET, ModelSpec, StateDict

log = logging.getLogger(__name__)

_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def drop_aux_keys(state_dict: StateDict) -> StateDict:
    """Remove auxiliary-classifier entries (``aux1.*``, ``aux2.*``, ``AuxLogits.*``).

    torchvision's GoogLeNet and Inception v3 checkpoints carry the auxiliary
    heads used in training; the dreamable models are built without them.
    """
    kept = {k: v for k, v in state_dict.items() if not k.startswith(_AUX_PREFIXES)}
    dropped = len(state_dict) - len(kept)
    if dropped:
        log.debug("Dropped %d auxiliary-classifier keys from the state dict", dropped)
    return kept


def _no_inplace(net: nn.Module) -> nn.Module:
    """Switch every ``nn.ReLU`` in ``net`` to out-of-place (see module docstring)."""
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net


def _build_googlenet() -> nn.Module:
    from torchvision.models import googlenet

    return _no_inplace(googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=True))


def _build_inception_v3() -> nn.Module:
    from torchvision.models import inception_v3

    return _no_inplace(inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True))


def _build_vgg16() -> nn.Module:
    from torchvision.models import vgg16

    return _no_inplace(vgg16(weights=None))


def _build_vgg19() -> nn.Module:
    from torchvision.models import vgg19

    return _no_inplace(vgg19(weights=None))


def _build_resnet50() -> nn.Module:
    from torchvision.models import resnet50

    return _no_inplace(resnet50(weights=None))


def _weights_enum(enum_name: str, member: str):
    import torchvision.models as tvm

    return getattr(getattr(tvm, enum_name), member)


def _downloader(enum_name: str, member: str) -> Callable[[], Optional[StateDict]]:
    """Return a loader of torchvision's ``enum_name.member`` checkpoint (cache, else download)."""

    def load() -> Optional[StateDict]:
        weights = _weights_enum(enum_name, member)
        log.info("Loading torchvision weights %s.%s from %s (cached after the first download)",
                 enum_name, member, weights.url)
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True, map_location="cpu")

    return load


# torchvision checkpoint URLs, written out so that listing models does not import torchvision.models
# (tests check them against the enums' ``.url``).
WEIGHT_URLS = {
    ("GoogLeNet_Weights", "IMAGENET1K_V1"): "https://download.pytorch.org/models/googlenet-1378be20.pth",
    ("Inception_V3_Weights", "IMAGENET1K_V1"): "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    ("VGG16_Weights", "IMAGENET1K_V1"): "https://download.pytorch.org/models/vgg16-397923af.pth",
    ("VGG19_Weights", "IMAGENET1K_V1"): "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    ("ResNet50_Weights", "IMAGENET1K_V1"): "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


def _hint(enum_name: str, member: str, arch: str) -> str:
    url = WEIGHT_URLS[(enum_name, member)]
    return (
        f"The default weights are torchvision's {enum_name}.{member}, downloaded on first use from {url} "
        "into the torch hub cache (needs internet once). Offline: download that file on another machine and "
        "pass it as the weights file (load_model(..., weights=FILE)); "
        f"any .pth/.safetensors state dict of torchvision's {arch} works."
    )


# --- layer tables -----------------------------------------------------------------------------

_GOOGLENET_LAYERS = {
    name: name
    for name in (
        "conv1", "conv2", "conv3",
        "inception3a", "inception3b",
        "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
        "inception5a", "inception5b",
    )
}


def _inception_v3_layers() -> dict[str, str]:
    """torchvision names, each Mixed block followed by its Keras alias (mixed0 = Mixed_5b ... mixed10 = Mixed_7c)."""
    stem = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2")
    mixed = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c")
    layers = {name: name for name in stem}
    for i, name in enumerate(mixed):
        layers[name] = name
        layers[f"mixed{i}"] = name
    return layers


# VGG stages: number of 3x3 convolutions per stage (each conv is followed by a ReLU; each stage by a max-pool).
_VGG16_STAGES = (2, 2, 3, 3, 3)
_VGG19_STAGES = (2, 2, 4, 4, 4)


def vgg_layers(stages: tuple[int, ...]) -> dict[str, str]:
    """Caffe-style VGG names -> ``features.N`` indices of torchvision's VGG (no batch norm).

    ``features`` is ``[conv, relu] * n`` then ``maxpool`` for each stage, so for
    VGG16 ``conv1_1 = features.0``, ``relu1_1 = features.1``, ``pool1 = features.4``,
    ``relu4_3 = features.22``, ``pool5 = features.30``.
    """
    layers: dict[str, str] = {}
    index = 0
    for stage, convs in enumerate(stages, start=1):
        for i in range(1, convs + 1):
            layers[f"conv{stage}_{i}"] = f"features.{index}"
            layers[f"relu{stage}_{i}"] = f"features.{index + 1}"
            index += 2
        layers[f"pool{stage}"] = f"features.{index}"
        index += 1
    return layers


# torchvision ResNet-50: bottleneck blocks per stage.
_RESNET50_BLOCKS = (3, 4, 6, 3)


def _resnet50_layers() -> dict[str, str]:
    """``conv1`` (stem after BN+ReLU), ``maxpool``, every bottleneck ``layerS.B``, and each stage ``layerS``.

    A stage's output equals its last block's output; the stage name comes right
    after that block in the shallow-to-deep order.
    """
    layers = {"conv1": "relu", "maxpool": "maxpool"}
    for stage, blocks in enumerate(_RESNET50_BLOCKS, start=1):
        for b in range(blocks):
            layers[f"layer{stage}.{b}"] = f"layer{stage}.{b}"
        layers[f"layer{stage}"] = f"layer{stage}"
    return layers


SPECS = [
    ModelSpec(
        name="googlenet",
        description="GoogLeNet / Inception v1 (torchvision; ImageNet weights ported from TensorFlow, "
        "downloaded on first use)",
        build=_build_googlenet,
        layers=_GOOGLENET_LAYERS,
        normalization=IMAGENET,
        default_objective="inception4c",
        min_size=32,
        load_default_weights=_downloader("GoogLeNet_Weights", "IMAGENET1K_V1"),
        weights_hint=_hint("GoogLeNet_Weights", "IMAGENET1K_V1", "googlenet"),
        convert_state_dict=drop_aux_keys,
    ),
    ModelSpec(
        name="inception_v3",
        description="Inception v3 (torchvision; ImageNet weights ported from TensorFlow, downloaded on first use); "
        "Keras names mixed0..mixed10 also accepted",
        build=_build_inception_v3,
        layers=_inception_v3_layers(),
        normalization=IMAGENET,
        default_objective="Mixed_6c",
        min_size=75,
        load_default_weights=_downloader("Inception_V3_Weights", "IMAGENET1K_V1"),
        weights_hint=_hint("Inception_V3_Weights", "IMAGENET1K_V1", "inception_v3"),
        convert_state_dict=drop_aux_keys,
    ),
    ModelSpec(
        name="vgg16",
        description="VGG-16 (torchvision ImageNet, downloaded on first use); Caffe-style names conv1_1 .. pool5",
        build=_build_vgg16,
        layers=vgg_layers(_VGG16_STAGES),
        normalization=IMAGENET,
        default_objective="relu4_3",
        min_size=32,
        load_default_weights=_downloader("VGG16_Weights", "IMAGENET1K_V1"),
        weights_hint=_hint("VGG16_Weights", "IMAGENET1K_V1", "vgg16"),
    ),
    ModelSpec(
        name="vgg19",
        description="VGG-19 (torchvision ImageNet, downloaded on first use); Caffe-style names conv1_1 .. pool5",
        build=_build_vgg19,
        layers=vgg_layers(_VGG19_STAGES),
        normalization=IMAGENET,
        default_objective="relu4_3",
        min_size=32,
        load_default_weights=_downloader("VGG19_Weights", "IMAGENET1K_V1"),
        weights_hint=_hint("VGG19_Weights", "IMAGENET1K_V1", "vgg19"),
    ),
    ModelSpec(
        name="resnet50",
        description="ResNet-50 (torchvision ImageNet V1 weights, downloaded on first use); stages and bottlenecks",
        build=_build_resnet50,
        layers=_resnet50_layers(),
        normalization=IMAGENET,
        default_objective="layer3",
        min_size=32,
        load_default_weights=_downloader("ResNet50_Weights", "IMAGENET1K_V1"),
        weights_hint=_hint("ResNet50_Weights", "IMAGENET1K_V1", "resnet50"),
    ),
]
