"""How much a processed video flickers beyond what its input's motion explains.

Flicker is measured with the optical flow of the **input** clip: for each pair
``(t-1, t)`` the backward flow ``bw_t`` of the input (see
:mod:`dream_core.flow.warp` for the convention, ``frame_t ≈ warp(frame_{t-1}, bw_t)``)
carries frame ``t-1`` onto frame ``t``, and the remaining difference on the
pixels whose flow is reliable is the *warp error*. Applying the *same* flow to
the outputs tells how much of the output's change is not explained by the
scene's motion: a dream that sticks to the scene adds little warp error, one
that boils adds a lot.

Metrics (all on RGB ``0..1``, channel-averaged absolute differences):

* ``warp_err_in``: mean over pairs of the mean over reliable pixels of
  ``|in_t - warp(in_{t-1}, bw_t)|`` (the flow's own residual, a floor);
* ``warp_err_out``: the same with the outputs and the same flow;
* ``excess_flicker = warp_err_out - warp_err_in`` (negative when the output is
  steadier than the input, e.g. after temporal smoothing);
* ``strength``: mean ``|out - in|`` over every pixel of every frame (how much
  the processing changed the video);
* ``ratio = excess_flicker / strength``: flicker per unit of effect, comparable
  across settings of different strength; defined as ``0.0`` when
  ``strength`` is 0 (an unchanged video has no excess flicker either).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable, Iterator, Union

import torch

from .errors import FlowError, InvalidImageError
from .flow.estimate import DEFAULT_FLOW_METHOD, FlowEstimator, as_batch_frame, estimator_for
from .flow.flowset import FlowSet, iter_frames
from .flow.reliability import flow_pair
from .flow.warp import warp

log = logging.getLogger(__name__)

Frames = Union[torch.Tensor, Iterable[torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class StabilityMetrics:
    """Result of :func:`stability_metrics` (see the module docstring for definitions).

    Attributes:
        warp_err_in: input warp error on reliable pixels (RGB 0..1).
        warp_err_out: output warp error with the input's flow.
        excess_flicker: ``warp_err_out - warp_err_in``.
        strength: mean ``|out - in|`` over all frames and pixels.
        ratio: ``excess_flicker / strength`` (0.0 when ``strength`` is 0).
        num_pairs: frame pairs that contributed (pairs without any reliable
            pixel are skipped).
        reliable_fraction: mean fraction of reliable pixels over those pairs.
        pair_warp_err_out: the output's warp error of every pair ``(t-1, t)``, ``t = 1..N-1``
            (``nan`` for a skipped pair): where in the clip the flicker is (segment joins,
            scene cuts).
        frame_strength: mean ``|out - in|`` of every frame: how the dream's strength
            develops over the clip (a first frame stronger than the rest "pops").
    """

    warp_err_in: float
    warp_err_out: float
    excess_flicker: float
    strength: float
    ratio: float
    num_pairs: int
    reliable_fraction: float
    pair_warp_err_out: tuple[float, ...] = ()
    frame_strength: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain ``dict`` (e.g. for JSON or a table row)."""
        return dataclasses.asdict(self)


def _paired(inputs: Frames, outputs: Frames) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    ins, n_in = iter_frames(inputs)  # type: ignore[arg-type]
    outs, n_out = iter_frames(outputs)  # type: ignore[arg-type]
    if n_in is not None and n_out is not None and n_in != n_out:
        raise InvalidImageError(f"inputs have {n_in} frames but outputs have {n_out}; give one output frame per input frame.")
    out_iter = iter(outs)
    index = -1
    for index, frame_in in enumerate(ins):
        try:
            frame_out = next(out_iter)
        except StopIteration:
            raise InvalidImageError(
                f"outputs ended after {index} frames but inputs go on; give one output frame per input frame."
            ) from None
        yield index, as_batch_frame(frame_in, f"input frame {index}"), as_batch_frame(frame_out, f"output frame {index}")
    if next(out_iter, None) is not None:
        raise InvalidImageError(
            f"inputs ended after {index + 1} frames but outputs go on; give one output frame per input frame."
        )


def _masked_mean(diff: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> float:
    """Mean over pixels of ``mask`` of ``diff`` ``[1,3,H,W]`` (channel-averaged)."""
    return float((diff.mean(dim=1)[0] * mask).sum() / count)


def stability_metrics(
    inputs: Frames,
    outputs: Frames,
    flows: FlowSet | None = None,
    method: str = DEFAULT_FLOW_METHOD,
    *,
    estimator: FlowEstimator | None = None,
    consistency: bool = True,
    **options: object,
) -> StabilityMetrics:
    """Excess flicker of ``outputs`` over ``inputs``, measured with the inputs' flow.

    Frames stream pair by pair (constant memory): only frames ``t-1`` and
    ``t`` of each clip are held, so generators of decoded frames work.

    Args:
        inputs: input clip, RGB ``[N,3,H,W]`` in ``0..1`` or an iterable of
            ``[3,H,W]``/``[1,3,H,W]`` frames.
        outputs: processed clip, same number and size of frames (moved to the
            inputs' device per frame).
        flows: flows of ``inputs`` from :func:`~dream_core.flow.compute_flows`
            (reused, not recomputed); ``None`` to estimate them here.
        method: flow method when ``flows`` is ``None`` (ignored with ``estimator``).
        estimator: a :class:`~dream_core.flow.FlowEstimator` to reuse.
        consistency: when estimating, use the forward-backward check for the
            reliability mask (doubles the flow time).
        **options: passed to :class:`~dream_core.flow.FlowEstimator`
            (``max_side``, ``weights``, ...) when the flow is estimated here.

    Returns:
        :class:`StabilityMetrics`; with fewer than two frames (or no reliable
        pixel anywhere) the warp errors are 0 and ``num_pairs`` is 0.

    Convention:
        ``warp(x_{t-1}, bw_t)`` uses the input's backward flow of frame ``t``
        with border padding; pixels outside ``flows.reliable`` are ignored.

    Raises:
        InvalidImageError: no frames, frame shapes differ, or the clips differ
            in length.
        FlowError: ``flows`` was computed for another clip (frame count or size).
    """
    if flows is None:
        estimator = estimator_for(estimator, method, options)
    prev_in: torch.Tensor | None = None
    prev_out: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    err_in = err_out = frac = 0.0
    pairs = skipped = 0
    abs_sum = 0.0
    numel = 0
    count = 0
    pair_out: list[float] = []
    frame_strength: list[float] = []
    for index, x, y in _paired(inputs, outputs):
        count = index + 1
        if x.shape != y.shape:
            raise InvalidImageError(
                f"output frame {index} is {tuple(y.shape[-2:])} but input frame {index} is {tuple(x.shape[-2:])} (HxW); "
                "outputs must have the inputs' size."
            )
        y = y.to(device=x.device, dtype=x.dtype)
        if size is None:
            size = (int(x.shape[-2]), int(x.shape[-1]))
            if flows is not None:
                flows.check_matches(None, size[0], size[1])
        elif tuple(x.shape[-2:]) != size:
            raise InvalidImageError(f"input frame {index} is {tuple(x.shape[-2:])} but frame 0 is {size} (HxW).")
        abs_sum += float((y - x).abs().sum())
        numel += y.numel()
        frame_strength.append(float((y - x).abs().mean()))
        if prev_in is not None and prev_out is not None:
            if flows is not None:
                if index > len(flows):
                    raise FlowError(
                        f"flow was computed for {flows.num_frames} frames but more frames were given; "
                        "recompute it on these frames.", parameter="flow",
                    )
                bw, rel = flows.for_frame(index)
                bw = bw.to(x.device)
                rel = rel.to(device=x.device, dtype=x.dtype)
            else:
                assert estimator is not None
                pair = flow_pair(estimator, prev_in, x, consistency=consistency)
                bw, rel = pair.backward, pair.reliable.to(x.dtype)
            reliable = rel.sum()
            if float(reliable) < 1.0:
                skipped += 1
                pair_out.append(float("nan"))
            else:
                err_in += _masked_mean((x - warp(prev_in, bw, padding_mode="border")).abs(), rel, reliable)
                pair_out.append(_masked_mean((y - warp(prev_out, bw, padding_mode="border")).abs(), rel, reliable))
                err_out += pair_out[-1]
                frac += float(reliable) / rel.numel()
                pairs += 1
        prev_in, prev_out = x, y
    if size is None:
        raise InvalidImageError("No frames were given to measure stability on.")
    if flows is not None:
        flows.check_matches(count, size[0], size[1])
    if skipped:
        log.warning("stability: %d of %d frame pairs had no reliable pixel and were skipped", skipped, skipped + pairs)
    warp_in = err_in / pairs if pairs else 0.0
    warp_out = err_out / pairs if pairs else 0.0
    excess = warp_out - warp_in
    strength = abs_sum / numel if numel else 0.0
    ratio = excess / strength if strength > 1e-12 else 0.0
    return StabilityMetrics(
        warp_err_in=warp_in,
        warp_err_out=warp_out,
        excess_flicker=excess,
        strength=strength,
        ratio=ratio,
        num_pairs=pairs,
        reliable_fraction=frac / pairs if pairs else 0.0,
        pair_warp_err_out=tuple(pair_out),
        frame_strength=tuple(frame_strength),
    )
