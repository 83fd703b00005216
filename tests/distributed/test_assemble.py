"""Joining segment results into the output (dream_core.distributed.assemble): order, cross-fade, resume."""

from fractions import Fraction

import numpy as np
import pytest

from dream_core.distributed.assemble import Assembler, crossfade, output_pieces
from dream_core.distributed.job import SegmentResult, encode_segment
from dream_core.distributed.segments import crossfade_weights, plan_segments
from dream_core.video import VideoWriter, read_frames

RATE = Fraction(24)
H, W = 16, 24


def frame(value: float) -> np.ndarray:
    return np.full((H, W, 3), int(round(value)), np.uint8)


def dreamed(segment: int, index: int) -> np.ndarray:
    """What the worker of ``segment`` 'dreamed' for global frame ``index``: distinct per segment."""
    return frame(10 + 5 * index + 60 * (segment % 2))


def fake_result(seg) -> SegmentResult:
    body, count = encode_segment([dreamed(seg.number, t) for t in seg.body], RATE, 0)
    pick = lambda r: np.stack([dreamed(seg.number, t) for t in r]) if len(r) else np.zeros((0, H, W, 3), np.uint8)  # noqa: E731
    return SegmentResult(seg.number, body, count, (W, H), pick(seg.blend_in), pick(seg.blend_out),
                         len(seg.dream), 0.0, "test:0")


def expected(plan) -> list[np.ndarray]:
    out = []
    for seg in plan:
        out += [dreamed(seg.number, t) for t in seg.body]
        if seg.overlap_out:
            weights = crossfade_weights(seg.overlap_out)
            for j, t in enumerate(seg.blend_out):
                out.append(frame((1 - weights[j]) * dreamed(seg.number, t)[0, 0, 0]
                                 + weights[j] * dreamed(seg.number + 1, t)[0, 0, 0]))
    return out


def test_pieces_cover_the_range_in_order():
    plan = plan_segments(range(3, 40), 10, 6, 4)
    frames = [t for piece in output_pieces(plan) for t in piece.frames]
    assert frames == list(range(3, 40))
    assert [p.kind for p in output_pieces(plan)][:3] == ["body", "join", "body"]


def test_crossfade_ramps_from_the_previous_dream_to_the_next():
    prev, nxt = np.zeros((4, 2, 2, 3), np.uint8), np.full((4, 2, 2, 3), 250, np.uint8)
    mixed = crossfade(prev, nxt)[:, 0, 0, 0]
    assert mixed.tolist() == [50, 100, 150, 200]  # weights 1/5 .. 4/5 of the next segment


def test_results_in_any_order_make_the_output_in_order(tmp_path):
    plan = plan_segments(range(0, 23), 8, 5, 3)
    writer = VideoWriter(tmp_path / "out.mp4", RATE, crf=0)
    assembler = Assembler(writer, plan, RATE, 0)
    assert assembler.needed() == [0, 1, 2]
    assert assembler.add(fake_result(plan[2])) == 0  # waits for segment 0
    assert assembler.add(fake_result(plan[0])) == len(plan[0].body)  # its join waits for segment 1
    assembler.add(fake_result(plan[1]))
    assert assembler.done and assembler.committed == [0, 1, 2]
    writer.finish()
    got = list(read_frames(tmp_path / "out.mp4"))
    assert len(got) == 23
    want = expected(plan)
    assert max(int(np.abs(g.astype(int) - w.astype(int)).max()) for g, w in zip(got, want)) <= 1


def test_resume_before_a_join_needs_only_the_next_segment(tmp_path):
    plan = plan_segments(range(0, 23), 8, 5, 3)
    settings = {"plan": "test"}
    writer = VideoWriter(tmp_path / "out.mp4", RATE, crf=0, settings=settings)
    first = Assembler(writer, plan, RATE, 0)
    first.add(fake_result(plan[0]))  # body(0) committed, join(0|1) waits for segment 1
    writer.close()  # the run stops

    again = VideoWriter(tmp_path / "out.mp4", RATE, crf=0, settings=settings)
    resumed = Assembler(again, plan, RATE, 0)
    assert resumed.needed() == [1, 2]  # segment 0's blend_out was saved with its body
    resumed.add(fake_result(plan[2]))
    resumed.add(fake_result(plan[1]))
    again.finish()
    got = list(read_frames(tmp_path / "out.mp4"))
    assert max(int(np.abs(g.astype(int) - w.astype(int)).max()) for g, w in zip(got, expected(plan))) <= 1


def test_a_journal_off_the_piece_boundaries_is_refused(tmp_path):
    plan = plan_segments(range(0, 23), 8, 5, 3)
    writer = VideoWriter(tmp_path / "out.mp4", RATE, crf=0, segment_frames=2)
    writer.write(frame(1))
    writer.write(frame(2))  # 2 frames committed: body(0) has 5
    writer.close()
    with pytest.raises(Exception, match="piece boundary"):
        Assembler(VideoWriter(tmp_path / "out.mp4", RATE, crf=0, segment_frames=2), plan, RATE, 0)
