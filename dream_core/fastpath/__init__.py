"""The fast path: a rewritten copy of the network that the dream loop runs instead of ``model.net``.

BatchNorm folded into convolutions, static padding, a closed-form LRN backward,
polyphase input gradients for strided stems and ``channels_last`` weights
(:mod:`.rewrites`, :mod:`.lrn`, :mod:`.polyphase`), built and checked against the
original on a probe image (:mod:`.execution`, :mod:`.check`).
``FeatureHooks(..., optimize=True)`` uses it.

One switch turns it off (debugging, comparison): the environment variable
``DEEPDREAM_FAST_PATH=0``, :func:`set_enabled`, :func:`disabled`, or the
command line's ``--no-fast-path`` (:mod:`.switch`).
"""

from .execution import channels_last_pays, execution_copies, execution_net, forget_execution_copies
from .switch import ENV_VAR, disabled, enabled, set_enabled

__all__ = ["ENV_VAR", "channels_last_pays", "disabled", "enabled", "execution_copies", "execution_net",
           "forget_execution_copies", "set_enabled"]
