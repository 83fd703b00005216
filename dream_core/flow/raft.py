"""torchvision RAFT for :class:`~dream_core.flow.estimate.FlowEstimator`: loading and running it.

RAFT works at 1/8 resolution: sides must be multiples of 8, and torchvision's
correlation pyramid needs feature maps of at least 16 cells, i.e. 128 px.
Smaller frames are padded (replicate) up to that and cropped back.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import FlowError, WeightsError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

RAFT_METHODS = ("raft_small", "raft_large")

_RAFT_MULTIPLE = 8
_RAFT_MIN_SIDE = 128


def _raft_spec(arch: str):
    from torchvision.models import optical_flow as tvof

    if arch == "raft_small":
        return tvof.raft_small, tvof.Raft_Small_Weights.DEFAULT
    return tvof.raft_large, tvof.Raft_Large_Weights.DEFAULT


def load_raft(arch: str = "raft_large", weights: str | os.PathLike[str] | None = None) -> "nn.Module":
    """Build a torchvision RAFT network and load its weights (on the CPU, eval mode).

    Args:
        arch: ``"raft_small"`` or ``"raft_large"``.
        weights: path of a state-dict file (``.pth``/``.pt``/``.safetensors``,
            read safely without unpickling code), or ``None`` to use the
            torchvision weights (downloaded once into the torch hub cache).

    Returns:
        The network, ``eval()`` on the CPU.

    Raises:
        FlowError: ``arch`` is not a RAFT method.
        WeightsError: the file is missing/unreadable/for another architecture,
            or the download failed (the message gives the URL to fetch by hand).
    """
    if arch not in RAFT_METHODS:
        raise FlowError(f"Unknown RAFT architecture {arch!r}; choose one of {RAFT_METHODS}.{did_you_mean(arch, RAFT_METHODS)}")
    from ..models.weights import load_into, read_state_dict

    builder, enum_weights = _raft_spec(arch)
    net = builder(weights=None, progress=False)
    if weights is not None:
        try:
            state = read_state_dict(weights)
        except WeightsError as exc:
            raise WeightsError(str(exc), parameter="flow_weights") from exc
        source = os.fspath(weights)
    else:
        url = enum_weights.url
        try:
            state = enum_weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError, ...)
            hub = os.path.join(torch.hub.get_dir(), "checkpoints")
            raise WeightsError(
                f"Could not download the {arch} optical-flow weights from {url} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}). "
                f"Download that file on a machine with internet and either put it in {hub} "
                "or pass its path as the RAFT weights; or pick the 'dis' or 'farneback' flow method, which need no weights.",
                parameter="flow_weights",
            ) from exc
        source = url
    try:
        load_into(net, state, source=source, arch=arch)
    except WeightsError as exc:
        raise WeightsError(str(exc), parameter="flow_weights") from exc
    return net.eval()


def raft_flow(net: "nn.Module", src: torch.Tensor, dst: torch.Tensor, iters: int) -> torch.Tensor:
    """Flow ``f`` ``[B,H,W,2]`` with ``src(x) ≈ dst(x + f(x))`` for RGB ``[B,3,H,W]`` frames in ``0..1``.

    ``net`` must already be on the frames' device.
    """
    h, w = src.shape[-2:]
    ph = max(_RAFT_MIN_SIDE, math.ceil(h / _RAFT_MULTIPLE) * _RAFT_MULTIPLE) - h
    pw = max(_RAFT_MIN_SIDE, math.ceil(w / _RAFT_MULTIPLE) * _RAFT_MULTIPLE) - w
    with torch.inference_mode():
        a = src.float() * 2.0 - 1.0
        b = dst.float() * 2.0 - 1.0
        if ph or pw:
            a = F.pad(a, (0, pw, 0, ph), mode="replicate")
            b = F.pad(b, (0, pw, 0, ph), mode="replicate")
        flows = net(a, b, num_flow_updates=iters)
        flow = flows[-1][:, :, :h, :w]
    return flow.permute(0, 2, 3, 1).clone()
