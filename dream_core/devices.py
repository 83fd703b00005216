"""Device names checked before anything is built on them: :func:`check_device`."""

from __future__ import annotations

import torch

from .errors import InvalidParameterError

#: Device types a dream can run on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a :class:`torch.device`, checked to exist on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a :class:`torch.device`.

    Returns:
        The device.

    Raises:
        InvalidParameterError: not a device name, a type other than :data:`DEVICE_TYPES`,
            or a device this machine (or this PyTorch build) does not have (``parameter="device"``).
    """
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"device {device!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' (the N-th GPU) or 'mps'.",
            parameter="device",
        ) from exc
    if dev.type not in DEVICE_TYPES:
        raise InvalidParameterError(
            f"device {device!r} is of type '{dev.type}', which dreams do not run on; use 'cpu', 'cuda' or 'mps'.",
            parameter="device",
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a build without CUDA"
            raise InvalidParameterError(
                f"device {device!r}: no CUDA GPU is usable here (PyTorch {torch.__version__} is {build}, and "
                "no GPU or driver was found); use 'cpu'.", parameter="device",
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InvalidParameterError(
                f"device {device!r}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0..cuda:{count - 1}).", parameter="device",
            )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            reason = "this PyTorch build has no MPS support" if mps is None or not mps.is_built() else \
                "no Apple GPU is usable here"
            raise InvalidParameterError(f"device {device!r}: {reason}; use 'cpu'.", parameter="device")
    return dev
