"""The flags of rendering on several workers (Ray), shared by ``video`` and ``batch``."""

from __future__ import annotations

import argparse


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray-address``, ``--segment-length``, ``--burn-in``, ``--overlap``, ``--max-retries``."""
    g = p.add_argument_group(
        "workers", "Several workers dream segments of the clip in parallel on Ray (pip install 'deepdream-video[ray]'); "
                   "each segment starts --burn-in frames early and is cross-faded over --overlap frames with the one "
                   "before it, so the joins do not show. One worker never needs Ray.")
    g.add_argument("--workers", type=int, default=1,
                   help="segments dreamed at once: one per GPU, or CPU slots sharing the cores")
    g.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (head 'host:6379', 'ray://host:10001' or 'auto'); none: a local runtime")
    g.add_argument("--segment-length", type=int, default=None,
                   help="kept frames per segment; none: the clip split evenly between the workers (at most 240)")
    g.add_argument("--burn-in", type=int, default=None,
                   help="frames dreamed before each segment's first kept frame (more = closer to an unbroken run, "
                        "slower); none: 16 (0 in mode independent)")
    g.add_argument("--overlap", type=int, default=None,
                   help="frames cross-faded at each join (<= burn-in); none: 8 (0 in mode independent)")
    g.add_argument("--max-retries", type=int, default=3,
                   help="retries of a segment whose worker process died")
