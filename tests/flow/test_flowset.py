"""FlowSet and compute_flows (dream_core.flow.flowset): a clip's flows, streamed or from a tensor."""

from __future__ import annotations

import pytest
import torch

from conftest import multiscale_texture, shifted
from dream_core.errors import FlowError
from dream_core.flow import FlowSet, compute_flows


def test_compute_flows_flowset_and_streaming():
    prev = multiscale_texture(48, 64)
    clip = torch.cat([prev, shifted(prev), shifted(shifted(prev))])
    calls = []
    flows = compute_flows(clip, "dis", on_pair=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert len(flows) == 2 and flows.num_frames == 3 and flows.size == (48, 64)
    assert flows.method == "dis"
    for t in (flows.backward, flows.forward, flows.reliable):
        assert t is not None and t.dtype == torch.float32 and t.device.type == "cpu"
    assert flows.backward.shape == (2, 48, 64, 2) and flows.reliable.shape == (2, 48, 64)
    assert flows.nbytes == 2 * 48 * 64 * (8 + 8 + 4)
    # A generator of [3,H,W] frames streams to the same result.
    streamed = compute_flows((f for f in clip), "dis", keep_forward=False)
    assert streamed.forward is None
    torch.testing.assert_close(streamed.backward, flows.backward)
    torch.testing.assert_close(streamed.reliable, flows.reliable)
    bw2, rel2 = flows.for_frame(2)
    assert torch.equal(bw2, flows.backward[1]) and torch.equal(rel2, flows.reliable[1])
    with pytest.raises(FlowError, match="frame 0"):
        flows.for_frame(0)
    assert flows.to("cpu") is flows
    single = compute_flows(clip[:1])
    assert len(single) == 0 and single.num_frames == 1 and single.size == (48, 64)


def test_flowset_check_matches_and_validation():
    flows = FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(11, 64, 64), method="dis")
    flows.check_matches(12, 64, 64)
    with pytest.raises(FlowError) as info:
        flows.check_matches(10, 64, 64)
    assert str(info.value) == (
        "flow was computed for 12 frames of 64x64 but 10 frames of 64x64 were given; recompute it on these frames."
    )
    assert info.value.parameter == "flow"
    with pytest.raises(FlowError, match="80x64"):
        flows.check_matches(12, 64, 80)
    with pytest.raises(FlowError, match="reliable"):
        FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(10, 64, 64))
    with pytest.raises(FlowError, match="forward"):
        FlowSet(torch.zeros(11, 64, 64, 2), torch.zeros(11, 64, 32, 2), torch.ones(11, 64, 64))
    with pytest.raises(FlowError, match="backward"):
        FlowSet(torch.zeros(11, 64, 64, 3), None, torch.ones(11, 64, 64))
    with pytest.raises(FlowError, match="size"):
        FlowSet(torch.zeros(11, 64, 64, 2), None, torch.ones(11, 64, 64), size=(32, 32))
