"""How an objective term turns its layer's activations into one value per image: the loss modes.

With ``a`` the term's activations ``[B, C, h, w]`` (its selected channels only) and ``a_c`` one channel
``[B, h, w]``, each mode gives ``value[b]`` (dreaming maximises it):

============  ==============================  ==============================================================
mode          value[b]                        notes
============  ==============================  ==============================================================
``l2``        ``mean(a²)``                    the default: the classic DeepDream objective (as before)
``mean``      ``mean(a)``                     raises the average activation; negative values pull it down
``norm``      ``mean_c ‖a_c‖₂``               each channel's Euclidean norm over its positions, averaged
                                              over the channels: every channel pushes as hard as any other
``abs_mean``  ``mean(|a|)``                   like ``mean``, but negative activations count as strong
``abs_l2``    ``mean_c ‖ |a_c| ‖₂``           equal to ``norm`` on real activations (the original tool
                                              defines both)
``mse``       ``mean(a²)``                    the original tool's mean squared error against its all-zero
                                              target: the same value as ``l2``
``bce``       ``mean(log(1 + e^a))``          the original tool's binary cross-entropy (with logits)
                                              against its all-zero target
============  ==============================  ==============================================================

Means run over the selected channels and all positions, so a term's size does not depend on the
image size or on how many channels it picks (``norm``: on the channel count). The
original tool (neural-dream's ``-loss_mode``) applies a mode to each picked channel and sums the
channels; for every mode but ``norm``/``abs_l2`` that is the same value times the channel count (the
same dream: the step is normalised), and for ``norm``/``abs_l2`` the same per-channel norms, averaged
instead of summed. Its ``l2`` is ``sqrt(sum a²)`` per channel, which is our ``norm``; our ``l2``
keeps the mean of squares this package has always used.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import InvalidParameterError, did_you_mean

#: The loss mode of a term that names none.
DEFAULT_LOSS = "l2"


def _mean_square(a: torch.Tensor) -> torch.Tensor:
    return a.pow(2).mean(dim=(1, 2, 3))


def _channel_norms(a: torch.Tensor) -> torch.Tensor:
    # vector_norm's gradient is 0 (not NaN) for an all-zero channel, e.g. a dead ReLU channel.
    return torch.linalg.vector_norm(a, dim=(2, 3)).mean(dim=1)


_FORMULAS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l2": _mean_square,
    "mean": lambda a: a.mean(dim=(1, 2, 3)),
    "norm": _channel_norms,
    "abs_mean": lambda a: a.abs().mean(dim=(1, 2, 3)),
    "abs_l2": lambda a: _channel_norms(a.abs()),
    "mse": _mean_square,
    "bce": lambda a: F.softplus(a).mean(dim=(1, 2, 3)),
}

#: Every loss mode, in the order front ends list them.
LOSS_MODES: tuple[str, ...] = tuple(_FORMULAS)


def check_loss_mode(mode: object, where: str = "") -> str:
    """``mode`` as a known loss mode name (lower case).

    Raises:
        InvalidParameterError: an unknown name, with close matches and the list (``parameter="objective"``).
    """
    name = str(mode).strip().lower()
    if name not in _FORMULAS:
        place = f" in '{where}'" if where else ""
        raise InvalidParameterError(
            f"Unknown loss mode {str(mode)!r}{place}.{did_you_mean(name, LOSS_MODES)} Use one of "
            f"{', '.join(LOSS_MODES)} (e.g. 'block10_dw@norm').", parameter="objective",
        )
    return name


def loss_value(act: torch.Tensor, mode: str = DEFAULT_LOSS) -> torch.Tensor:
    """The value of ``act`` ``[B,C,h,w]`` (the term's channels) under loss ``mode``: ``[B]`` float32.

    Computed in float32 whatever ``act``'s dtype (autocast activations are half precision).
    """
    return _FORMULAS[mode](act.float())
