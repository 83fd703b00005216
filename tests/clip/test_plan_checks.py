"""What ClipPlan checks before the first frame, and the sizes it bounds (issue 20): schedule keys that land on
one frame, schedule and objective sizes as a whole, every frame's octaves, a cadence's held memory, masks."""

import tracemalloc

import numpy as np
import pytest
import torch

from dream_core import DreamSettings
from dream_core.animation import MaskBatch, MaskSource, VideoMask
from dream_core.clip import ClipPlan, VideoSettings, parse_schedule
from dream_core.clip.plan import MAX_HELD_BYTES, check_cadence_memory, held_frame_bytes, parse_setting_schedule
from dream_core.clip.schedule import MAX_SCHEDULE_TEXT
from dream_core.errors import ChannelOutOfRangeError, InvalidImageError, InvalidParameterError, ScheduleSyntaxError
from dream_core.channel_select import MAX_OBJECTIVE_CHANNELS
from dream_core.objectives import parse_objective

FAST = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=2)


@pytest.mark.parametrize("text, fps", [
    ("0:(0.01), 0s:(0.05)", 24),
    ("0:(0.01), 6:(0.02), 0.25s:(0.2)", 24),  # 0.25 s at 24 fps is frame 6: 6:(0.02) was never used
    ("0:(0.01), 6:(0.02), 0.25s:(0.2)", 23.976),  # 5.994 and 6: no whole frame between them either
    ("0:(0.01), 5.5:(0.02), 6:(0.2)", None),  # 5.5 is never a whole frame: frame 6 is the next key
])
def test_two_keys_on_one_frame_are_refused(tiny_model, text, fps):
    with pytest.raises(ScheduleSyntaxError, match=r"learning_rate: .*two keys on one frame.*never be used") as info:
        ClipPlan(tiny_model, FAST, schedules={"learning_rate": text}, fps=fps)
    assert info.value.parameter == "learning_rate"


def test_keys_a_frame_apart_are_all_used(tiny_model):
    plan = ClipPlan(tiny_model, FAST, schedules={"learning_rate": "hold: 0:(0.01), 6:(0.02), 0.25s:(0.2)"}, fps=25)
    assert [plan(i).settings.learning_rate for i in (0, 6, 7)] == [0.01, 0.02, 0.2]  # 0.25 s = frame 6.25


def test_schedule_text_is_bounded_and_read_in_linear_time():
    with pytest.raises(ScheduleSyntaxError, match=f"at most {MAX_SCHEDULE_TEXT}"):
        parse_schedule("0:(1)" + ", 1:(1)" * MAX_SCHEDULE_TEXT)
    keys = MAX_SCHEDULE_TEXT // 16
    schedule = parse_schedule(", ".join(f"{i}:({i % 7})" for i in range(keys)))  # was quadratic: 49 s for 2.9 MB
    assert [schedule.at(i) for i in (0, 8, keys - 1, keys + 5)] == [0, 1, (keys - 1) % 7, (keys - 1) % 7]
    assert schedule.at(3.5) == 3.5


def test_objective_channels_are_bounded_as_a_whole_before_any_set_is_built():
    text = "block10_dw:[" + ",".join(["0-65535"] * 2490) + "]"  # 19.9 KB: 7 GB and 20 s before its refusal
    tracemalloc.start()
    try:
        with pytest.raises(ChannelOutOfRangeError, match=f"over {MAX_OBJECTIVE_CHANNELS} channels in all"):
            parse_objective(text)
        with pytest.raises(ChannelOutOfRangeError, match="in all"):
            parse_objective(", ".join(["block10_dw:0-40000"] * 2))  # two terms, each under the bound
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert parse_objective("conv1:1-2, 1e-5*conv2:[3,5-6]").to_string() == "conv1:1-2, 1e-05*conv2:[3,5-6]"


def test_a_schedule_of_objectives_is_bounded_as_a_whole(tiny_model):
    keys = ", ".join(f"{k}:(conv2:0-20000)" for k in range(4))  # each key's objective alone is under the bound
    with pytest.raises(ChannelOutOfRangeError, match="in all"):
        parse_setting_schedule("objective", keys)  # what the Schedule node validates with
    made_elsewhere = parse_schedule(keys, kind="text", name="objective")
    with pytest.raises(ChannelOutOfRangeError, match="in all"):
        ClipPlan(tiny_model, FAST, schedules={"objective": made_elsewhere})


def test_octaves_too_deep_at_a_later_frame_are_refused_before_the_first(tiny_model):
    plan = ClipPlan(tiny_model, FAST, schedules={"num_octaves": "0:(1), 30:(1), 40:(6)"})
    plan.check(range(0, 60))  # the settings alone are valid at every frame
    plan.check(range(0, 60), size=(400, 400))
    with pytest.raises(InvalidParameterError, match=r"6 octaves.*Use at most 5 octaves.*frame 39 of the clip") as info:
        plan.check(range(0, 60), size=(40, 40))  # tiny's minimum side is 8
    assert info.value.parameter == "num_octaves"
    plan.check(range(0, 39), size=(40, 40))  # frames 0..38 never go past 5 octaves
    # Two schedules whose product dips between keys: 5 octaves at scale 1.5 at frame 50, none at a key.
    dip = ClipPlan(tiny_model, FAST, schedules={"num_octaves": "0:(1), 100:(9)", "octave_scale": "0:(2.0), 100:(1.05)"})
    for index in (0, 100):
        dip.check(range(index, index + 1), size=(48, 48))
    with pytest.raises(InvalidParameterError, match=r"frame \d+ of the clip"):
        dip.check(range(0, 101), size=(48, 48))


def test_cadence_memory_is_capped_before_the_first_frame(tiny_model):
    each = held_frame_bytes((360, 640))
    assert 21e6 < each < 23e6  # measured: 21.5 MB more per held 640x360 frame
    fits = 1 + MAX_HELD_BYTES // each
    check_cadence_memory(fits, (360, 640))
    with pytest.raises(InvalidParameterError, match=rf"cadence of 107 holds 106 frames of 640x360.*at most {fits} "
                                                    r"at this size.*max_side (\d+) or less") as info:
        check_cadence_memory(107, (360, 640))
    assert info.value.parameter == "cadence"
    side = int(str(info.value).split("max_side ")[1].split()[0])
    check_cadence_memory(107, (side * 9 // 16, side))  # the size it names fits
    plan = ClipPlan(tiny_model, FAST, cadence=16)
    plan.check(range(100), size=(720, 1280))
    with pytest.raises(InvalidParameterError, match="cadence of 16"):
        plan.check(range(100), size=(2160, 3840))  # the node's largest cadence at 4K: ~11 GB


def test_masks_that_do_not_cover_the_frames_are_refused_before_the_first(tiny_model, tmp_path):
    from dream_core.video import VideoWriter

    plan = ClipPlan(tiny_model, FAST)
    with VideoWriter(tmp_path / "mask.mp4", 24, resume=False) as writer:
        for _ in range(5):
            writer.write(np.full((16, 16, 3), 255, np.uint8))
    short = VideoMask(tmp_path / "mask.mp4")
    plan.check(range(0, 5), masks=short)
    with pytest.raises(InvalidImageError, match=r"has 5 frames; the clip's frames 0..7 need one each") as info:
        plan.check(range(0, 8), masks=short)
    assert info.value.parameter == "mask"
    batch = MaskBatch(torch.ones(4, 8, 8), offset=2)
    plan.check(range(2, 6), masks=batch)
    for frames in (range(0, 4), range(3, 7)):
        with pytest.raises(InvalidImageError, match="4 masks, for frames 2..5"):
            plan.check(frames, masks=batch)
    plan.check(range(0, 100), masks=MaskBatch(torch.ones(1, 8, 8)))
    plan.check(range(0, 100), masks=MaskSource(torch.ones(8, 8)))


def test_schedules_of_settings_the_mode_never_reads_are_refused(tiny_model):
    """A schedule is honoured or refused: carry & co. do nothing in modes independent and seed (the Zoom node
    accepted a carry schedule and ignored it)."""
    independent, seed = VideoSettings(mode="independent"), VideoSettings(mode="seed")
    for video, name in ((independent, "carry"), (independent, "later_iterations"), (seed, "temporal_weight"),
                        (seed, "occlusion_feather")):
        with pytest.raises(InvalidParameterError, match=rf"{name} is scheduled, but mode '{video.mode}'.*never reads"):
            ClipPlan(tiny_model, FAST, video=video, schedules={name: "0:(0.5), 4:(0.9)"})
    ClipPlan(tiny_model, FAST, video=seed, cadence=2, schedules={"occlusion_feather": "0:(1), 4:(3)"})  # in-betweens
    feedback = ClipPlan(tiny_model, FAST, video=independent, schedules={"later_iterations": "0:(0.5), 4:(1)"},
                        feedback=True)
    with pytest.raises(InvalidParameterError, match="mode 'independent' of a feedback animation never reads it"):
        ClipPlan(tiny_model, FAST, video=independent, schedules={"carry": "0:(0.5), 4:(0.9)"}, feedback=True)
    from dream_core.animation import feedback_plan

    plan = feedback_plan(feedback)  # honoured: each frame's own fraction of the iterations
    assert [plan(k).settings.num_iterations for k in (0, 1, 4)] == [2, 1, 2]
    assert feedback_plan(feedback, 1.0)(1).settings.num_iterations == 2
