"""The captured dream step (dream_core.step_graph).

On the CPU the capture machinery runs with a stand-in for CUDA graphs whose "replay" runs the captured
step function again: everything else (static buffers, the device-side jitter, loading an octave, reuse
across dreams, every fallback) is the real code on real computations, and must give exactly the
step-by-step result. The CUDA-marked tests capture real graphs.
"""

import logging

import pytest
import torch

import dream_core.step_graph as step_graph_mod
from conftest import textured_image
from dream_core import DreamSettings, dream_image
from dream_core.dream import TemporalAnchor
from dream_core.features import FeatureHooks
from dream_core.objectives import resolve_objective
from dream_core.step_graph import MAX_GRAPHS, StepGraphs

S = DreamSettings(num_octaves=2, octave_scale=1.5, num_iterations=4, jitter=6, seed=2)


class EagerCapture:
    """Stands in for CUDA graphs on the CPU: capturing records the step, a replay runs it again."""

    def __init__(self, fail_capture: bool = False, oom_warm_up: bool = False) -> None:
        self.warm_ups = self.captures = self.replays = 0
        self.fail_capture, self.oom_warm_up = fail_capture, oom_warm_up

    def warm_up(self, body, device):
        self.warm_ups += 1
        if self.oom_warm_up:
            raise torch.OutOfMemoryError("out of memory (test)")
        body()

    def capture(self, body, device):
        self.captures += 1
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")

        def replay():
            self.replays += 1
            body()
        return replay


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    """Let the dream try graphs on the CPU (the real rule, with the CPU among the capture devices)."""
    monkeypatch.setattr(step_graph_mod, "CAPTURE_DEVICES", ("cuda", "cpu"))


def _dream_with(model, capturer, x, settings=S, hooks=None, **kw):
    with FeatureHooks(model, ["conv2"], optimize=True) as own:
        hooks = hooks or own
        StepGraphs.of(hooks, capturer)
        return dream_image(model, x, "conv2", settings, hooks=hooks, **kw), StepGraphs.of(hooks)


@pytest.mark.parametrize("extra", ["none", "mask", "anchor", "plain rule"])
def test_graph_path_gives_exactly_the_step_by_step_result(tiny_model, graphs_on_cpu, extra):
    x = textured_image(40, 56)
    kw, settings = {}, S
    if extra == "mask":
        kw["mask"] = torch.linspace(0, 1, 56).expand(40, 56)
    if extra == "anchor":
        kw["anchor"] = TemporalAnchor(textured_image(40, 56, seed=3), torch.rand(1, 1, 40, 56), 0.4)
    if extra == "plain rule":
        settings = S.with_(step_rule="plain", gradient_smoothing=3.0)  # 19 taps: the convolution blur
    plain = dream_image(tiny_model, x, "conv2", settings.with_(cuda_graphs=False), **kw)
    capturer = EagerCapture()
    out, graphs = _dream_with(tiny_model, capturer, x, settings, **kw)
    assert torch.equal(out, plain)
    n = settings.num_iterations
    assert (capturer.warm_ups, capturer.captures, capturer.replays) == (2, 2, 2 * (n - 1))
    assert graphs.captured() == 2


def test_graphs_are_reused_by_later_dreams_with_the_same_hooks(tiny_model, graphs_on_cpu):
    capturer = EagerCapture()
    a, b = textured_image(40, 56, seed=1), textured_image(40, 56, seed=2)
    objective = resolve_objective(tiny_model, "conv2")  # one object for the clip, as FrameDreamer keeps it
    with FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        StepGraphs.of(hooks, capturer)
        first = dream_image(tiny_model, a, objective, S, hooks=hooks)
        second = dream_image(tiny_model, b, objective, S.with_(num_iterations=2), hooks=hooks)  # a later frame
        assert (capturer.captures, capturer.replays) == (2, 2 * 3 + 2 * 2)
        assert hooks.cache  # graphs live as long as the hooks ...
    assert not hooks.cache  # ... and go with them
    assert torch.equal(first, dream_image(tiny_model, a, "conv2", S.with_(cuda_graphs=False)))
    assert torch.equal(second, dream_image(tiny_model, b, "conv2", S.with_(num_iterations=2, cuda_graphs=False)))


def test_a_failed_capture_falls_back_to_steps_and_is_not_tried_again(tiny_model, graphs_on_cpu, caplog):
    capturer = EagerCapture(fail_capture=True)
    x = textured_image(40, 56)
    objective = resolve_objective(tiny_model, "conv2")
    with caplog.at_level(logging.INFO, logger="dream_core.step_graph"), \
            FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        StepGraphs.of(hooks, capturer)
        out = dream_image(tiny_model, x, objective, S, hooks=hooks)
        again = [dream_image(tiny_model, x, objective, S, hooks=hooks) for _ in range(2)]
    assert torch.equal(out, dream_image(tiny_model, x, "conv2", S.with_(cuda_graphs=False)))
    assert all(torch.equal(a, out) for a in again)
    assert (capturer.warm_ups, capturer.captures, capturer.replays) == (2, 2, 0)  # once per octave shape
    assert "could not be captured" in caplog.text and "operation not permitted" in caplog.text


def test_out_of_memory_in_the_warm_up_step_goes_step_by_step(tiny_model, graphs_on_cpu):
    capturer = EagerCapture(oom_warm_up=True)
    x = textured_image(40, 56)
    out, graphs = _dream_with(tiny_model, capturer, x)
    assert torch.equal(out, dream_image(tiny_model, x, "conv2", S.with_(cuda_graphs=False)))
    assert capturer.captures == 0 and graphs.captured() == 0
    assert len(graphs) == 2 and graphs.held() == 0  # known not to fit; their full-size buffers let go at once


def _each_equals_its_stepped_dream(model, x, runs, capturer) -> None:
    """Dream ``x`` once per ``(settings, kwargs)`` of ``runs`` on one set of hooks (graphs kept from one dream to
    the next, made by ``capturer``); each dream must equal its own step-by-step dream."""
    objective = resolve_objective(model, "conv2")
    with FeatureHooks(model, ["conv2"], optimize=True) as hooks:
        StepGraphs.of(hooks, capturer)
        for settings, kw in runs:
            out = dream_image(model, x, objective, settings, hooks=hooks, **kw)
            plain = dream_image(model, x, "conv2", settings.with_(cuda_graphs=False), **kw)
            assert torch.equal(out, plain), (settings, sorted(kw))


def test_graphs_are_kept_per_tile_size(tiny_model, graphs_on_cpu):
    """The same octave shapes in other tiles (a smaller tile_size learned after running out of memory) are other
    graphs: each dream on the shared hooks equals its own stepped dream."""
    capturer = EagerCapture()
    runs = [(S.with_(tile_size=tile, tile_overlap=8), {}) for tile in (128, 64, 128)]
    _each_equals_its_stepped_dream(tiny_model, textured_image(150, 170), runs, capturer)
    assert capturer.captures == 4  # 2 octaves x 2 tile sizes; the third dream replays the first's


def test_progress_sees_each_steps_own_image(tiny_model, graphs_on_cpu):
    x = textured_image(40, 56)
    plain, captured = [], []
    dream_image(tiny_model, x, "conv2", S.with_(cuda_graphs=False), on_step=lambda s, t, c: plain.append(c))
    with FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        StepGraphs.of(hooks, EagerCapture())
        dream_image(tiny_model, x, "conv2", S, hooks=hooks, on_step=lambda s, t, c: captured.append(c))
    assert len(captured) == len(plain) == 2 * S.num_iterations
    assert all(torch.equal(a, b) for a, b in zip(plain, captured))  # copies, not the graph's buffer


def test_one_step_octaves_are_not_captured(tiny_model, graphs_on_cpu):
    x = textured_image(40, 56)
    capturer = EagerCapture()
    _dream_with(tiny_model, capturer, x, S.with_(num_iterations=1))  # a capture would never be replayed
    _dream_with(tiny_model, capturer, x, S.with_(cuda_graphs=False))
    assert capturer.warm_ups == capturer.captures == 0


@pytest.mark.parametrize("extra", ["none", "mask"])
def test_tiled_octaves_are_captured_with_their_tiles(tiny_model, graphs_on_cpu, extra):
    """An octave larger than tile_size is captured whole, its tiles read through the roll held on the device:
    exactly the step-by-step dream (whose tiles roll on the host), and another jitter per step."""
    x = textured_image(150, 170)
    settings = S.with_(tile_size=64, tile_overlap=8, jitter=9)  # both octaves in tiles (150 and 100 px high)
    kw = {"mask": torch.linspace(0, 1, 170).expand(150, 170)} if extra == "mask" else {}
    plain = dream_image(tiny_model, x, "conv2", settings.with_(cuda_graphs=False), **kw)
    capturer = EagerCapture()
    out, graphs = _dream_with(tiny_model, capturer, x, settings, **kw)
    assert torch.equal(out, plain)
    assert capturer.captures == 2 and graphs.captured() == 2 and capturer.replays == 2 * (S.num_iterations - 1)
    assert not torch.equal(out, dream_image(tiny_model, x, "conv2", settings.with_(cuda_graphs=False, tile_size=1024)))


def test_graphs_kept_per_hooks_are_bounded(tiny_model, graphs_on_cpu):
    capturer = EagerCapture()
    objective = resolve_objective(tiny_model, "conv2")
    with FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        graphs = StepGraphs.of(hooks, capturer)
        for k in range(MAX_GRAPHS + 3):  # every gradient smoothing is another captured step
            dream_image(tiny_model, textured_image(24, 24), objective,
                        S.with_(num_octaves=1, num_iterations=2, gradient_smoothing=0.5 + k / 10), hooks=hooks)
        assert len(graphs) == MAX_GRAPHS and capturer.captures == MAX_GRAPHS + 3


def test_a_scheduled_learning_rate_replays_the_same_graphs(tiny_model, graphs_on_cpu):
    """The learning rate is read from a buffer: frames with other rates reuse the octave's graph and still
    step with their own rate (each dream equals its step-by-step dream)."""
    capturer = EagerCapture()
    masks = (None, torch.linspace(0, 1, 56).expand(40, 56))
    runs = [(S.with_(learning_rate=lr), {"mask": mask}) for lr in (0.01, 0.03, 0.002) for mask in masks]
    _each_equals_its_stepped_dream(tiny_model, textured_image(40, 56), runs, capturer)
    assert capturer.captures == 4  # 2 octave shapes, with and without a mask: not one per rate


def test_a_stable_clip_through_graphs_is_the_stepped_clip(tiny_model, graphs_on_cpu):
    """A clip's frames share hooks and graphs: the first frame captures without an anchor, the later ones with
    it, and every later frame reloads image and anchor into the same graphs."""
    from conftest import panning_clip
    from dream_core.flow import FlowEstimator
    from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

    clip = panning_clip(frames=4, h=48, w=64)
    outs = {}
    for graphs in (True, False):
        capturer = EagerCapture()
        with FrameDreamer(tiny_model, "conv2", S.with_(cuda_graphs=graphs), VideoSettings(mode="stable")) as dreamer:
            StepGraphs.of(dreamer._hooks, capturer)
            outs[graphs] = [d.image for d in dream_clip(dreamer, ((i, f[None]) for i, f in enumerate(clip)),
                                                        FlowEstimator("dis"))]
        assert capturer.captures == (4 if graphs else 0)  # 2 octaves, without and with the anchor
    assert all(torch.equal(a, b) for a, b in zip(outs[True], outs[False]))


def test_on_the_cpu_nothing_is_captured(tiny_model):
    x = textured_image(40, 56)
    with FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        on = dream_image(tiny_model, x, "conv2", S, hooks=hooks)
        assert not hooks.cache
    assert torch.equal(on, dream_image(tiny_model, x, "conv2", S.with_(cuda_graphs=False)))


# --------------------------------------------------------------------------- CUDA


def _cuda_model(name: str = "googlenet"):
    from fastpath.test_execution import _zoo_model

    return _zoo_model(name, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("name, autocast, tiles", [("googlenet", "none", False), ("efficientnet_lite0", "none", False),
                                                   ("googlenet", "bf16", False), ("efficientnet_lite0", "none", True)])
def test_cuda_graph_dream_matches_the_step_by_step_dream(name, autocast, tiles):
    model = _cuda_model(name)
    x = textured_image(160, 224).cuda()
    s = DreamSettings(num_octaves=3, num_iterations=5, autocast=autocast)
    if tiles:  # the two larger octaves in tiles, captured with them
        s = s.with_(tile_size=128, tile_overlap=32)
    objective = resolve_objective(model, None)
    with FeatureHooks(model, objective.layers(), optimize=True) as hooks:
        graphed = dream_image(model, x, objective, s, hooks=hooks)
        assert StepGraphs.of(hooks).captured() == 3  # every octave captured
    plain = dream_image(model, x, objective, s.with_(cuda_graphs=False))
    change = (plain - x).abs().mean()
    assert (graphed - plain).abs().mean() < 0.05 * change  # float round-off, amplified a little by the dream
    assert graphed.device.type == "cuda"


@pytest.mark.cuda
def test_cuda_graphs_are_captured_once_per_clip():
    from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

    model = _cuda_model()
    frames = [(i, textured_image(96, 128, seed=i).cuda()) for i in range(4)]
    s = DreamSettings(num_octaves=2, num_iterations=4)
    with FrameDreamer(model, None, s, VideoSettings(mode="independent")) as dreamer:
        outs = [done.image for done in dream_clip(dreamer, iter(frames), None)]
        graphs = StepGraphs.of(dreamer._hooks)
        assert graphs.captured() == 2 and len(graphs) == 2
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.cuda
def test_stable_mode_clip_with_graphs_matches_stepping():
    """Later frames of a stable clip carry an anchor: graphs with the anchor's static buffers, reloaded per frame."""
    from conftest import panning_clip
    from dream_core.flow import FlowEstimator
    from dream_core.clip import FrameDreamer, VideoSettings, dream_clip

    model = _cuda_model()
    clip = panning_clip(frames=4, h=96, w=128).cuda()
    outs = {}
    for graphs in (True, False):
        s = DreamSettings(num_octaves=2, num_iterations=5, cuda_graphs=graphs)
        with FrameDreamer(model, None, s, VideoSettings(mode="stable")) as dreamer:
            outs[graphs] = [d.image for d in dream_clip(dreamer, ((i, f[None]) for i, f in enumerate(clip)),
                                                        FlowEstimator("dis"))]
            if graphs:
                assert StepGraphs.of(dreamer._hooks).captured() == 4  # 2 octaves, without and with the anchor
    for with_graphs, stepped, raw in zip(outs[True], outs[False], clip):
        assert (with_graphs - stepped).abs().mean() < 0.05 * (stepped - raw[None]).abs().mean()


def test_a_half_precision_image_keeps_its_learning_rate_as_a_number(tiny_model):
    """A float16/bfloat16 buffer would round the rate before the step multiplies with it (the step-by-step path
    multiplies by the number at float32): there the rate stays baked into the graph, one graph per rate; in
    float32 one graph serves every rate."""
    from dream_core.dream_step import StepTerms
    from dream_core.step_graph import graph_key

    objective = resolve_objective(tiny_model, "conv2")
    for dtype, shared in ((torch.float32, True), (torch.float64, True), (torch.float16, False), (torch.bfloat16, False)):
        image = torch.zeros(1, 3, 8, 8, dtype=dtype)
        keys = {graph_key(objective, image, S, None, StepTerms(lr)) for lr in (0.01, 0.02)}
        assert (len(keys) == 1) == shared, dtype


def test_every_octave_of_a_default_720p_dream_is_captured(tiny_model, graphs_on_cpu):
    """The target case: 1280x720 with the default settings (4 octaves, tile_size 1024, so the full-size octave
    runs as two tiles): all four octaves replay a graph, none steps."""
    capturer = EagerCapture()
    with FeatureHooks(tiny_model, ["conv2"], optimize=True) as hooks:
        graphs = StepGraphs.of(hooks, capturer)
        dream_image(tiny_model, torch.rand(1, 3, 720, 1280), "conv2", DreamSettings(num_iterations=2), hooks=hooks)
        assert graphs.captured() == DreamSettings().num_octaves == 4
