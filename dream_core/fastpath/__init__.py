"""The fast path: a rewritten copy of the network that the dream loop runs instead of ``model.net``.

BatchNorm folded into convolutions, static padding, a closed-form LRN backward,
polyphase input gradients for strided stems and ``channels_last`` weights
(:mod:`.rewrites`, :mod:`.lrn`, :mod:`.polyphase`), built and checked against the
original on a probe image (:mod:`.execution`, :mod:`.check`).
``FeatureHooks(..., optimize=True)`` uses it.

Whether a dream uses it is chosen per call (``DreamSettings.fast_path``; the
command line's ``--no-fast-path``), with a default from the environment
variable ``DEEPDREAM_FAST_PATH`` (:mod:`.switch`).
"""

from .execution import channels_last_pays, execution_copies, execution_net, forget_execution_copies
from .switch import ENV_VAR, default_enabled, use_fast_path

__all__ = ["ENV_VAR", "channels_last_pays", "default_enabled", "execution_copies", "execution_net",
           "forget_execution_copies", "use_fast_path"]
