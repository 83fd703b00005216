"""The ComfyUI nodes called directly with real tensors (no ComfyUI needed).

ComfyUI runs nodes under ``torch.inference_mode()``, so the nodes are called
inside it here too.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from conftest import TinyNet, textured_image
from pack_loader import PACK_NAME, ROOT, load_pack

pack = load_pack()
core = pack.dream_core
nodes = pack.nodes
host = nodes.comfy_adapter
M = pack.NODE_CLASS_MAPPINGS

FAST = {"num_octaves": 2, "num_iterations": 2, "jitter": 4}


def defaults(node_cls: type) -> dict:
    """Default value of every widget input of ``node_cls`` (combos: their default or first entry)."""
    out = {}
    spec = node_cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, (kind, *rest) in spec.get(section, {}).items():
            opts = rest[0] if rest else {}
            if isinstance(kind, list):
                out[name] = opts.get("default", kind[0])
            elif "default" in opts:
                out[name] = opts["default"]
    return out


def image_batch(b: int = 1, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """ComfyUI IMAGE ``[B,H,W,3]`` of smooth textures."""
    return torch.cat([textured_image(h, w, seed + i) for i in range(b)]).permute(0, 2, 3, 1).contiguous()


def panning_clip(n: int = 4, h: int = 48, w: int = 64, step: int = 2) -> torch.Tensor:
    """IMAGE ``[n,H,W,3]``: a texture moving ``step`` px right per frame."""
    big = textured_image(h, w + step * n, seed=3)
    frames = [big[..., step * (n - t) : step * (n - t) + w] for t in range(n)]
    return torch.cat(frames).permute(0, 2, 3, 1).contiguous()


@pytest.fixture
def tiny():
    """A 3-layer random conv net as a DreamModel of the pack's own dream_core."""
    spec = core.models.ModelSpec(
        name="tiny", description="test net", build=TinyNet,
        layers={"conv1": "conv1", "conv2": "conv2", "conv3": "conv3"},
        normalization=core.models.spec.IMAGENET, default_objective="conv2", min_size=8,
    )
    torch.manual_seed(0)
    return core.DreamModel(spec, TinyNet(), "random init")


@pytest.fixture(scope="module")
def lite0():
    """The real offline default model, loaded through the loader node."""
    with torch.inference_mode():
        (model,) = M["DDVModelLoader"]().load(core.DEFAULT_MODEL, nodes.model_nodes.DEFAULT_WEIGHTS)
    return model


def dream(model, images, objective=None, guide=None, **over):
    args = {**defaults(M["DDVDreamImage"]), **FAST, **over}
    with torch.inference_mode():
        return M["DDVDreamImage"]().dream(images, model, objective=objective, guide=guide, **args)[0]


def video(model, images, flow=None, **over):
    args = {**defaults(M["DDVVideoDream"]), **FAST, **over}
    with torch.inference_mode():
        return M["DDVVideoDream"]().dream(images=images, model=model, flow=flow, **args)[0]


def flow_of(images, method="dis", max_side=0):
    with torch.inference_mode():
        return M["DDVOpticalFlow"]().compute(images, method, max_side)


# --------------------------------------------------------------------------- registry and INPUT_TYPES


def test_pack_import_needs_no_comfyui():
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from pack_loader import load_pack
        pack = load_pack()
        bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'server', 'comfy_api', 'aiohttp')]
        assert not bad, bad
        assert pack.WEB_DIRECTORY == './web'
        print(len(pack.NODE_CLASS_MAPPINGS))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12"


def test_mappings_ids_and_display_names():
    assert set(M) == {"DDVModelLoader", "DDVLayerSelect", "DDVDreamImage", "DDVOpticalFlow", "DDVVideoDream",
                      "DDVVideoStream", "DDVSchedule", "DDVAnimate", "DDVSettings", "DDVDreamImageV2",
                      "DDVVideoDreamV2", "DDVAnimateV2"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(M)
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["DDVOpticalFlow"] == "DeepDream Optical Flow"
    assert (ROOT / "web" / "deepdream_layers.js").is_file()


@pytest.mark.parametrize("node_id", sorted(load_pack().NODE_CLASS_MAPPINGS))
def test_input_types_well_formed(node_id):
    cls = M[node_id]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert kind, f"{node_id}.{name}: empty combo"
                assert all(isinstance(v, str) for v in kind)
                assert opts.get("default", kind[0]) in kind
            elif kind in ("INT", "FLOAT"):
                assert opts["min"] <= opts["default"] <= opts["max"], f"{node_id}.{name} default outside min/max"
                assert isinstance(opts["default"], int if kind == "INT" else (int, float))
            elif kind == "BOOLEAN":
                assert isinstance(opts["default"], bool)
            elif kind == "STRING":
                assert isinstance(opts["default"], str)
            else:
                assert kind in ("IMAGE", "MASK", "VIDEO", "DEEPDREAM_MODEL", "DEEPDREAM_OBJECTIVE", "DEEPDREAM_FLOW",
                                "DEEPDREAM_SCHEDULE", "DEEPDREAM_SETTINGS"), kind
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
    assert callable(getattr(cls, cls.FUNCTION))
    assert cls.CATEGORY == "DeepDream Video" and cls.DESCRIPTION


def test_dream_widget_defaults_are_the_core_defaults():
    d = defaults(M["DDVDreamImage"])
    s = core.DreamSettings()
    for field in ("num_octaves", "octave_scale", "num_iterations", "learning_rate", "jitter", "gradient_smoothing",
                  "seed", "luminance_only", "autocast", "tile_size", "tile_overlap", "step_rule",
                  "colour_decorrelation", "laplacian_levels"):
        assert d[field] == getattr(s, field), field
    v = defaults(M["DDVVideoDream"])
    vs = core.VideoSettings()
    for field in ("mode", "carry", "temporal_weight", "later_iterations", "occlusion_feather"):
        assert v[field] == getattr(vs, field), field
    assert v["colour_coherence"] == core.clip.settings.RECOMMENDED_COLOUR_COHERENCE  # the CLI's too
    assert v["start_frame"] == 0 and v["frame_count"] == 0
    assert M["DDVVideoDream"].INPUT_TYPES()["required"]["mode"][0] == ["stable", "seed", "independent"]


@pytest.mark.parametrize("node_id", ["DDVDreamImage", "DDVVideoDream"])
def test_step_and_preset_widgets_come_last_and_are_optional(node_id):
    """Workflows saved before these widgets keep their positional widget values and still queue."""
    spec = M[node_id].INPUT_TYPES()
    later = ["step_rule", "colour_decorrelation", "laplacian_levels", "preset"]
    later += ["cadence", "fps", "colour_coherence"] if node_id == "DDVVideoDream" else []  # added after the look's
    widgets = [n for n, (kind, *_) in spec["optional"].items() if isinstance(kind, list) or kind in ("INT", "FLOAT")]
    assert widgets == later
    assert spec["optional"]["preset"][0][0] == "custom" and defaults(M[node_id])["preset"] == "custom"
    assert set(spec["optional"]["preset"][0][1:]) == set(core.presets.PRESETS)


def test_preset_decides_the_look_custom_runs_the_widgets():
    widgets = {**defaults(M["DDVDreamImage"]), "learning_rate": 0.05, "seed": 9}
    custom, _ = nodes.common.merge_settings(widgets)
    assert custom.learning_rate == 0.05 and custom.seed == 9
    intense, _ = nodes.common.merge_settings({**widgets, "preset": "intense"})
    assert intense == core.presets.preset_settings("intense", core.DreamSettings(seed=9))
    # A prompt from before the look widgets existed: the core defaults.
    old = {k: v for k, v in widgets.items() if k not in ("step_rule", "colour_decorrelation", "laplacian_levels", "preset")}
    assert nodes.common.merge_settings(old)[0].step_rule == core.DreamSettings().step_rule


def test_preset_changes_the_dream(tiny):
    images = image_batch()
    assert not torch.equal(dream(tiny, images, preset="gentle"), dream(tiny, images, preset="legacy"))
    # What the web extension shows in the widgets after choosing the preset is what the preset runs.
    assert torch.equal(dream(tiny, images, preset="legacy"), dream(tiny, images, **core.presets.preset_look("legacy")))


def test_presets_payload_for_the_web_extension():
    payload = nodes.common.presets_payload()
    assert payload["custom"] == "custom" and payload["fields"] == list(core.presets.LOOK_FIELDS)
    assert payload["presets"]["legacy"]["values"]["step_rule"] == "plain"
    for name, entry in payload["presets"].items():
        assert set(entry["values"]) == set(payload["fields"]) and entry["description"]
    import json

    json.dumps(payload)


# --------------------------------------------------------------------------- model loader


def test_loader_gives_model_on_offload_device(lite0):
    """The dream nodes move it to the compute device for their dream and back (nodes/device_room.py)."""
    assert lite0.name == "efficientnet_lite0"
    assert lite0.device == host.offload_device()
    assert not any(p.requires_grad for p in lite0.parameters())


def test_loader_lists_default_weights_first():
    spec = M["DDVModelLoader"].INPUT_TYPES()["required"]
    assert spec["model_name"][0][0] == "efficientnet_lite0" and spec["model_name"][1]["default"] == "efficientnet_lite0"
    assert spec["weights"][0][0] == "(default)"


def test_loader_missing_weights_name_folder_and_source():
    v = M["DDVModelLoader"].VALIDATE_INPUTS("bvlc_googlenet", "(default)")
    assert isinstance(v, str) and "models/deepdream" in v and "bvlc_googlenet.pth" in v
    v = M["DDVModelLoader"].VALIDATE_INPUTS("googlenet", "nope.pth")
    assert isinstance(v, str) and "nope.pth" in v and "models/deepdream" in v
    assert "Did you mean" in M["DDVModelLoader"].VALIDATE_INPUTS("googlenett", "(default)")
    assert M["DDVModelLoader"].VALIDATE_INPUTS("efficientnet_lite0", "(default)") is True
    with pytest.raises(core.WeightsError, match="models/deepdream.*pytorch-old-caffemodels"):
        M["DDVModelLoader"]().load("bvlc_googlenet", "(default)")
    with pytest.raises(core.WeightsError, match="models/deepdream"):
        M["DDVModelLoader"]().load("efficientnet_lite0", "missing.safetensors")


def test_loader_reads_a_weights_file_and_rejects_wrong_architecture(tmp_path, lite0):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0.net.state_dict().items()}, str(path))
    with torch.inference_mode():
        (model,) = M["DDVModelLoader"]().load("efficientnet_lite0", str(path))
    assert model.weights_source == str(path)
    assert torch.equal(model.net.state_dict()["_conv_stem.weight"], lite0.net.state_dict()["_conv_stem.weight"])
    changed = M["DDVModelLoader"].IS_CHANGED
    before = changed("efficientnet_lite0", str(path))
    assert changed("efficientnet_lite0", str(path)) == before  # the same file: ComfyUI keeps its cached model
    assert changed("resnet50", str(path)) != before
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file replaced in place
    assert isinstance(before, str) and changed("efficientnet_lite0", str(path)) != before  # a string, never NaN
    with pytest.raises(core.WeightsError, match="do not fit"):
        M["DDVModelLoader"]().load("resnet50", str(path))


@pytest.fixture
def comfy_folders(tmp_path, monkeypatch):
    """A fake ``folder_paths`` host module: one weights file listed in models/deepdream.

    Not ComfyUI's code (the real module is exercised by the example workflows in ComfyUI itself): the
    listing is fixed data, and ``get_full_path`` is deliberately naive - it joins any name to the folder
    and returns whatever exists, absolute paths and ``..`` included - so only the pack's own check
    stands between a client's name and the server's files.
    """
    import os
    import types

    models = tmp_path / "ComfyUI" / "models"
    (models / "deepdream").mkdir(parents=True)
    (models / "deepdream" / "w.pth").write_bytes(b"weights")
    (models / "deepdream" / "notes.txt").write_bytes(b"not weights")
    (tmp_path / "outside.pth").write_bytes(b"elsewhere on the server")
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models)
    fp.folder_names_and_paths = {}
    fp.get_folder_paths = lambda name: fp.folder_names_and_paths[name][0]
    fp.get_filename_list = lambda name: ["w.pth"]
    fp.get_full_path = lambda name, filename: next(
        (os.path.join(folder, filename) for folder in fp.folder_names_and_paths[name][0]
         if os.path.exists(os.path.join(folder, filename))), None)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    host.register_model_folder()
    return tmp_path


@pytest.mark.parametrize("name", ["/etc/passwd", "../../../outside.pth", "{outside}", "notes.txt", "missing.pth"])
def test_loader_names_only_files_of_the_model_folders(comfy_folders, name):
    name = name.format(outside=comfy_folders / "outside.pth")
    loader = M["DDVModelLoader"]
    # Naming 'weights' in VALIDATE_INPUTS switches ComfyUI's own list check off: ours refuses everything else.
    assert host.resolve_weights(name) is None
    message = loader.VALIDATE_INPUTS("efficientnet_lite0", name)
    assert isinstance(message, str) and "is not in the models/deepdream folder" in message
    assert loader.IS_CHANGED("efficientnet_lite0", name) == f"efficientnet_lite0|{name}"  # no path, no mtime
    with pytest.raises(core.WeightsError, match="models/deepdream"):
        loader().load("efficientnet_lite0", name)


def test_loader_accepts_a_file_of_the_model_folder(comfy_folders):
    assert host.list_weight_files() == ["w.pth"]
    assert M["DDVModelLoader"].VALIDATE_INPUTS("efficientnet_lite0", "w.pth") is True
    path = str(comfy_folders / "ComfyUI" / "models" / "deepdream" / "w.pth")
    assert host.resolve_weights("w.pth") == path
    assert M["DDVModelLoader"].IS_CHANGED("efficientnet_lite0", "w.pth").startswith(f"efficientnet_lite0|{path}|")


# --------------------------------------------------------------------------- layers / objective


def test_layer_select_builds_and_chains(lite0):
    (a,) = M["DDVLayerSelect"]().select(lite0, "block10_dw", "3, 7, 10-12", 1.0)
    (b,) = M["DDVLayerSelect"]().select(lite0, "block8_dw", "", 0.5, objective=a)
    assert a.to_string() == "block10_dw:[3,7,10-12]"
    assert b.to_string() == "block10_dw:[3,7,10-12], 0.5*block8_dw"
    assert b.layers() == ["block10_dw", "block8_dw"]
    (c,) = M["DDVLayerSelect"]().select(lite0, "block12_dw", "[5]", 1.0)
    assert c.to_string() == "block12_dw:5"


def test_layer_select_errors_list_close_matches(lite0, tiny):
    with pytest.raises(core.ChannelOutOfRangeError, match="0..671"):
        M["DDVLayerSelect"]().select(lite0, "block10_dw", "700", 1.0)
    with pytest.raises(core.ObjectiveSyntaxError):
        M["DDVLayerSelect"]().select(lite0, "block10_dw", "3-x", 1.0)
    with pytest.raises(core.UnknownLayerError, match="Did you mean: 'block10_dw'"):
        M["DDVLayerSelect"]().select(lite0, "blok10_dw", "", 1.0)
    with pytest.raises(core.UnknownLayerError, match="Its layers: stem, block0"):
        M["DDVLayerSelect"]().select(lite0, "inception4c", "", 1.0)  # a googlenet layer on lite0
    msg = M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dww", "")
    assert isinstance(msg, str) and "block10_dw" in msg
    assert isinstance(M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dw", "1-"), str)
    assert M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dw", "1,4-6") is True
    # A huge range is refused from its bounds (was: 12 GB while validating, enough to take a server down).
    assert "beyond any layer" in M["DDVLayerSelect"].VALIDATE_INPUTS("block10_dw", "0-99999999")
    for weight in (float("nan"), float("inf"), 0.0):  # through the API a weight skips the widget's range
        with pytest.raises(core.InvalidParameterError, match="finite, non-zero weight"):
            M["DDVLayerSelect"]().select(lite0, "block10_dw", "", weight)
    # an objective chained for one model, used with another
    (obj,) = M["DDVLayerSelect"]().select(lite0, "block10_dw", "", 1.0)
    with pytest.raises(core.UnknownLayerError, match="block10_dw"):
        dream(tiny, image_batch(), objective=obj)


def test_layer_catalog_for_the_web_extension():
    info = core.catalog.layer_catalog("efficientnet_lite0")
    by_name = {entry["name"]: entry["channels"] for entry in info["layers"]}
    assert info["default"] == "block10_dw" and by_name["block10_dw"] == 672
    assert [entry["name"] for entry in info["layers"]] == core.get_spec("efficientnet_lite0").layer_names
    assert set(by_name) <= set(M["DDVLayerSelect"].INPUT_TYPES()["required"]["layer"][0])
    with pytest.raises(core.UnknownModelError):
        core.catalog.layer_catalog("no_such_model")


# --------------------------------------------------------------------------- dream image


def test_dream_image_batch_shape_range_and_input_untouched(tiny):
    images = image_batch(b=2)
    before = images.clone()
    out = dream(tiny, images)
    assert out.shape == (2, 48, 64, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(images, before)
    assert (out - images).abs().mean() > 1e-3
    # batch items dreamed one at a time give the same result as alone
    alone = dream(tiny, images[1:2])
    torch.testing.assert_close(out[1:2], alone)


def test_dream_image_real_model_raises_objective(lite0):
    images = image_batch(b=1, h=64, w=64)
    (obj,) = M["DDVLayerSelect"]().select(lite0, "block6_dw", "", 1.0)
    out = dream(lite0, images, objective=obj, num_octaves=1, num_iterations=3, jitter=0)
    x, y = images.permute(0, 3, 1, 2), out.permute(0, 3, 1, 2)
    assert core.objective_value(lite0, y, obj) > core.objective_value(lite0, x, obj) * 1.1


def test_dream_image_accepts_rgba_gray_and_guide(tiny):
    rgba = torch.cat([image_batch(), torch.ones(1, 48, 64, 1)], dim=-1)
    gray = image_batch()[..., :1]
    assert dream(tiny, rgba).shape == (1, 48, 64, 3)
    assert dream(tiny, gray).shape == (1, 48, 64, 3)
    guided = dream(tiny, image_batch(), guide=image_batch(seed=5, h=40, w=40))
    assert guided.shape == (1, 48, 64, 3) and not torch.equal(guided, dream(tiny, image_batch()))


@pytest.mark.parametrize("bad", [torch.rand(48, 64, 3), torch.rand(1, 48, 64, 2), torch.zeros(0, 48, 64, 3),
                                 (torch.rand(1, 8, 8, 3) * 255).to(torch.uint8)])
def test_dream_image_rejects_bad_images(tiny, bad):
    with pytest.raises(core.InvalidImageError):
        dream(tiny, bad)


@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_dream_image_seed_out_of_range_is_named(tiny, seed):
    with pytest.raises(core.InvalidParameterError, match="seed must be in 0..18446744073709551615"):
        dream(tiny, image_batch(), seed=seed)


def test_dream_image_rejects_bad_settings(tiny):
    with pytest.raises(core.InvalidParameterError, match="tile_overlap"):
        dream(tiny, image_batch(), tile_size=64, tile_overlap=40)
    with pytest.raises(core.InvalidParameterError, match="octaves"):
        dream(tiny, image_batch(h=16, w=16), num_octaves=6, octave_scale=2.0)
    with pytest.raises(core.InvalidParameterError, match="DeepDream Model Loader"):
        dream("not a model", image_batch())


def test_dream_image_reports_progress_with_previews(tiny, monkeypatch):
    calls = []

    class Recorder(host.Progress):
        def update(self, value, image=None, force_preview=False):
            calls.append((value, self.total, image is not None))
            if image is not None:
                assert host.tensor_to_pil(image() if callable(image) else image).mode == "RGB"

    monkeypatch.setattr(host, "Progress", Recorder)
    dream(tiny, image_batch(b=2))
    steps = FAST["num_octaves"] * FAST["num_iterations"]
    assert calls[-1][:2] == (2 * steps, 2 * steps)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert all(c[2] for c in calls)


class Interrupted(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


def interrupt_after(monkeypatch, n: int) -> list:
    seen = []

    def check():
        seen.append(1)
        if len(seen) >= n:
            raise Interrupted()

    monkeypatch.setattr(host, "check_interrupt", check)
    return seen


def test_dream_image_cancel_stops_within_a_step_and_removes_hooks(tiny, monkeypatch):
    seen = interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupted):
        dream(tiny, image_batch(b=3), num_iterations=5)
    assert len(seen) == 3
    assert core.count_hooks(tiny) == 0


# --------------------------------------------------------------------------- optical flow


def test_flow_node_outputs_flowset_and_preview():
    clip = panning_clip(n=4)
    before = clip.clone()
    flows, preview = flow_of(clip)
    assert isinstance(flows, core.flow.FlowSet)
    assert flows.backward.shape == (3, 48, 64, 2) and flows.forward.shape == (3, 48, 64, 2)
    assert flows.reliable.shape == (3, 48, 64) and flows.backward.device.type == "cpu"
    assert preview.shape == (4, 48, 64, 3) and preview.dtype == torch.float32
    assert 0 <= preview.min() and preview.max() <= 1 and torch.equal(preview[0], torch.ones(48, 64, 3))
    assert torch.equal(clip, before)
    # content moving right by 2 px: backward flow u ~ -2 in the reliable interior
    u = flows.backward[..., 8:-8, 8:-8, 0]
    assert abs(u.median().item() + 2) < 0.5


def test_flow_node_max_side_and_methods():
    clip = panning_clip(n=3, h=64, w=96)
    flows, preview = flow_of(clip, "farneback", max_side=48)
    assert flows.size == (64, 96) and flows.method == "farneback" and preview.shape == (3, 64, 96, 3)
    methods = M["DDVOpticalFlow"].INPUT_TYPES()["required"]["method"][0]
    assert {"dis", "farneback", "raft_small", "raft_large"} <= set(methods)


def test_flow_preview_is_at_most_512_px():
    flows, preview = flow_of(panning_clip(n=2, h=300, w=1100), max_side=256)
    assert preview.shape == (2, 140, 512, 3)


def test_flow_node_bad_input():
    with pytest.raises(core.InvalidImageError):
        flow_of(torch.rand(3, 32, 3))
    with pytest.raises(core.InvalidImageError, match="farneback"):  # 8x8 frames: was a raw cv2.error
        flow_of(torch.rand(3, 8, 8, 3))


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize("mode", ["stable", "seed", "independent"])
def test_video_modes_shape_and_range(tiny, mode):
    clip = panning_clip(n=4)
    flows, _ = flow_of(clip)
    out = video(tiny, clip, flows if mode != "independent" else None, mode=mode)
    assert out.shape == (4, 48, 64, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert 0 <= out.min() and out.max() <= 1
    assert (out - clip).abs().mean() > 1e-3


def test_video_stable_carries_the_dream_along_the_flow(tiny):
    """In stable mode each frame starts from the previous dream moved with the scene: the dream difference of a
    frame matches the previous one's shifted by the pan far better than unshifted (with a flow of no motion it
    is the other way round)."""
    step = 3
    clip = panning_clip(n=3, step=step)  # content moves `step` px right per frame
    flows, _ = flow_of(clip)
    dream = video(tiny, clip, flows, mode="stable") - clip
    inner = (slice(8, -8), slice(8, -8))
    for k in (1, 2):
        moved = (dream[k][:, step:] - dream[k - 1][:, :-step]).abs()[inner].mean()
        unmoved = (dream[k] - dream[k - 1]).abs()[inner].mean()
        assert moved < 0.6 * unmoved, k


def test_video_node_is_the_frame_loop_driven_directly(tiny):
    """Frames 1..3 of a clip through the node equal dream_clip over the same frames, with the same flows."""
    clip = panning_clip(n=4)
    flows, _ = flow_of(clip)
    out = video(tiny, clip, flows, start_frame=1, frame_count=3)
    args = {**defaults(M["DDVVideoDream"]), **FAST}
    settings, video_settings = nodes.common.merge_settings(args)
    with core.FrameDreamer(tiny, None, settings, video_settings) as dreamer:
        frames = ((t, clip[t].permute(2, 0, 1)[None]) for t in range(1, 4))
        direct = torch.cat([d.image.permute(0, 2, 3, 1) for d in core.dream_clip(dreamer, frames, flows)])
    assert torch.equal(out, direct)


def test_video_node_follows_the_flow(tiny):
    """Through the node, the real flow and a flow of no motion give different frames, and the real one's
    are the better aligned with the clip's motion."""
    clip = panning_clip(n=4, step=3)
    flows, _ = flow_of(clip)
    still = core.FlowSet(torch.zeros_like(flows.backward), None, torch.ones_like(flows.reliable))
    real, static = video(tiny, clip, flows), video(tiny, clip, still)
    assert (real[1:] - static[1:]).abs().mean() > 1e-3
    frames = clip.permute(0, 3, 1, 2)
    aligned = core.stability_metrics(frames, real.permute(0, 3, 1, 2), flows=flows)
    misaligned = core.stability_metrics(frames, static.permute(0, 3, 1, 2), flows=flows)
    assert aligned.warp_err_out < 0.8 * misaligned.warp_err_out


def test_video_frame_range_and_start_image(tiny):
    clip = panning_clip(n=6)
    flows, _ = flow_of(clip)
    out = video(tiny, clip, flows, start_frame=2, frame_count=3)
    assert out.shape == (3, 48, 64, 3)
    capped = video(tiny, clip, flows, start_frame=4, frame_count=10)
    assert capped.shape == (2, 48, 64, 3)
    start = torch.full((1, 48, 64, 3), 0.25)
    out = video(tiny, clip, flows, start_frame=3, frame_count=2, start_image=start)
    torch.testing.assert_close(out[0], start[0])
    with pytest.raises(core.InvalidParameterError, match="start frame 6 is outside.*start_frame"):
        video(tiny, clip, flows, start_frame=6)


def test_video_flow_mismatch_names_the_flow_node(tiny):
    clip = panning_clip(n=4)
    flows, _ = flow_of(clip)
    with pytest.raises(core.FlowError, match="the DeepDream Optical Flow node") as err:
        video(tiny, clip[:3], flows)
    assert "4 frames" in str(err.value) and "3 frames" in str(err.value)
    small = F.interpolate(clip.permute(0, 3, 1, 2), size=(40, 64)).permute(0, 2, 3, 1)
    with pytest.raises(core.FlowError, match="64x40"):
        video(tiny, small, flows)
    with pytest.raises(core.FlowError, match="independent.*DeepDream Optical Flow node"):
        video(tiny, clip, None, mode="stable")


def test_video_cancel_stops_and_removes_hooks(tiny, monkeypatch):
    seen = interrupt_after(monkeypatch, 5)
    clip = panning_clip(n=4)
    flows, _ = flow_of(clip)
    with pytest.raises(Interrupted):
        video(tiny, clip, flows)
    assert len(seen) == 5 and core.count_hooks(tiny) == 0


def test_video_progress_per_frame_with_preview(tiny, monkeypatch):
    """The bar moves with every frame; previews come at most every half second (each reads the frame back from
    the GPU), and the last frame's is always shown."""
    calls = []

    class Recorder(host.Progress):
        def update(self, value, image=None, force_preview=False):
            calls.append((value, self.total, image is not None, force_preview))

    monkeypatch.setattr(host, "Progress", Recorder)
    clip = panning_clip(n=3)
    flows = flow_of(clip)[0]
    calls.clear()  # the flow's own progress
    video(tiny, clip, flows)
    assert {100, 200, 300} <= {v for v, *_ in calls} and all(total == 300 for _, total, *_ in calls)
    assert all(with_image for *_, with_image, _ in calls)
    assert [v for v, *_, forced in calls if forced] == [300]


def test_video_real_model_under_inference_mode(lite0):
    clip = panning_clip(n=3, h=64, w=96)
    flows, _ = flow_of(clip)
    (obj,) = M["DDVLayerSelect"]().select(lite0, "block6_dw", "0-40", 1.0)
    out = video(lite0, clip, flows, objective=obj, num_octaves=1, num_iterations=2)
    assert out.shape == (3, 64, 96, 3) and torch.isfinite(out).all()
    assert core.count_hooks(lite0) == 0


# --------------------------------------------------------------------------- adapter fallbacks


def test_adapter_fallbacks_without_comfyui(tmp_path):
    assert not host.in_comfyui()
    assert host.intermediate_device() == torch.device("cpu")
    assert host.compute_device().type in ("cpu", "cuda")
    assert host.list_weight_files() == []
    assert host.model_folders() == ["ComfyUI/models/deepdream"]
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert host.resolve_weights(str(f)) == str(f) and host.resolve_weights("absent.pth") is None
    host.check_interrupt()
    host.soft_empty_cache()
    bar = host.Progress(10)
    bar.update(5, torch.rand(1, 3, 8, 8), force_preview=True)
    pil = host.tensor_to_pil(torch.rand(2, 3, 9, 7))
    assert pil.size == (7, 9) and pil.mode == "RGB"
    assert math.isclose(host.Progress(0).total, 1)
    assert PACK_NAME in sys.modules


# --------------------------------------------------------------------------- animation: schedule, zoom, mask, cadence


def schedule(setting, keyframes, interpolation="linear", chain=None):
    with torch.inference_mode():
        return M["DDVSchedule"]().build(setting, keyframes, interpolation, chain)[0]


def test_schedule_node_chains_and_validates_before_the_run():
    s = schedule("carry", "0:(0.5), 4:(0.9)", chain=schedule("learning_rate", "0:(0.01), 4:(0.05)"))
    assert set(s) == {"learning_rate", "carry"} and s["carry"].at(2) == pytest.approx(0.7)
    assert M["DDVSchedule"].VALIDATE_INPUTS("learning_rate", "0:(0.01) 4:(0.05)", "linear").startswith("learning_rate")
    assert "character" in M["DDVSchedule"].VALIDATE_INPUTS("translate", "0:(1,2,3)", "linear")
    assert M["DDVSchedule"].VALIDATE_INPUTS("objective", "0:(conv1), 9:(conv3)", "hold") is True


def test_video_node_follows_its_schedule(tiny):
    clip = panning_clip(3)
    flow = flow_of(clip)[0]
    lr = schedule("learning_rate", "0:(0.005), 2:(0.05)")
    plain, scheduled = video(tiny, clip, flow), video(tiny, clip, flow, schedule=lr)
    assert torch.equal(plain[0], video(tiny, clip, flow, schedule=schedule("learning_rate", "0.01"))[0])
    d_plain, d_sched = (plain - clip).abs().mean(dim=(1, 2, 3)), (scheduled - clip).abs().mean(dim=(1, 2, 3))
    assert d_sched[0] < d_plain[0] and d_sched[2] > d_plain[2]  # weaker at the start, stronger at the end


def test_video_node_mask_keeps_the_outside_and_cadence_carries(tiny):
    clip = panning_clip(4)
    flow = flow_of(clip)[0]
    mask = torch.zeros(1, 48, 64)
    mask[:, :, 32:] = 1.0
    out = video(tiny, clip, flow, mask=mask, cadence=2)
    assert torch.equal(out[..., :28, :], clip[..., :28, :])
    assert (out[..., 36:, :] - clip[..., 36:, :]).abs().mean() > 0.005
    with pytest.raises(ValueError, match="cadence of 2 carries the dream along the optical flow"):
        video(tiny, clip, None, mode="independent", cadence=2)


def test_image_node_mask_per_image(tiny):
    images = image_batch(2)
    mask = torch.zeros(2, 48, 64)
    mask[0, :, :32] = 1.0
    mask[1, :, 32:] = 1.0
    out = dream(tiny, images, mask=mask)
    assert torch.equal(out[0, :, 40:], images[0, :, 40:]) and torch.equal(out[1, :, :24], images[1, :, :24])


def animate(model, image, **over):
    spec = defaults(M["DDVAnimate"])
    args = {**spec, **FAST, "frames": 3, **over}
    with torch.inference_mode():
        return M["DDVAnimate"]().animate(image=image, model=model, **args)[0]


def test_zoom_animation_node_frames_and_no_motion_is_re_dreaming(tiny):
    image = image_batch()
    out = animate(tiny, image, zoom=1.0, later_iterations=1.0, colour_coherence=0.0)  # the plain rule
    assert out.shape == (3, 48, 64, 3) and out.device.type == "cpu"
    settings = core.DreamSettings(num_octaves=2, num_iterations=2, jitter=4)
    x = image.permute(0, 3, 1, 2)
    for k in range(3):
        x = core.dream_image(tiny, x, None, settings)
        assert torch.allclose(out[k], x[0].permute(1, 2, 0), atol=1e-6)
    zoomed = animate(tiny, image, zoom=1.2, rotate=5.0, schedule=schedule("translate", "0:(0,0), 2:(3,-2)"),
                     colour_coherence=0.0)
    assert torch.equal(zoomed[0], out[0]) and not torch.equal(zoomed[2], out[2])


def test_zoom_progress_per_frame_with_preview(tiny, monkeypatch):
    """As the video node: the bar moves with every frame, previews at most every half second, the last forced."""
    calls = []

    class Recorder(host.Progress):
        def update(self, value, image=None, force_preview=False):
            calls.append((value, self.total, force_preview))

    monkeypatch.setattr(host, "Progress", Recorder)
    animate(tiny, image_batch(), zoom=1.1)
    assert {100, 200, 300} <= {v for v, *_ in calls} and all(total == 300 for _, total, _ in calls)
    assert [v for v, _, forced in calls if forced] == [300]


def test_colour_coherence_reaches_the_frames_from_the_video_and_animation_nodes(tiny):
    """The widget is passed on: each frame keeps its source frame's (the start image's) colour balance."""
    from dream_core.colour import colour_balance

    images = image_batch(3) * 0.5 + 0.25
    loud = {"learning_rate": 0.3}
    for run, source in ((lambda **o: video(tiny, images, mode="independent", **loud, **o), images),
                        (lambda **o: animate(tiny, images[:1], zoom=1.05, **loud, **o), images[:1].expand(3, -1, -1, -1))):
        off = lambda out: (colour_balance(out.permute(0, 3, 1, 2)) - colour_balance(source.permute(0, 3, 1, 2)))[:, [0, 2, 3]].abs().max()  # noqa: E731
        assert off(run(colour_coherence=1.0)) < 1.0 < off(run(colour_coherence=0.0))  # brightness and cast


def test_zoom_node_honours_or_refuses_every_schedule(tiny):
    """A Zoom node took a carry schedule and ignored it, and ignored a later_iterations schedule for its widget."""
    image = image_batch()
    with pytest.raises(ValueError, match="carry is scheduled, but mode 'independent' of a feedback animation"):
        animate(tiny, image, schedule=schedule("carry", "0:(0.5), 2:(0.9)"))
    plain = animate(tiny, image, later_iterations=0.5, colour_coherence=0.0)
    scheduled = animate(tiny, image, later_iterations=0.5, colour_coherence=0.0,
                        schedule=schedule("later_iterations", "0:(0.5), 1:(0.5), 2:(1.0)"))
    assert torch.equal(plain[1], scheduled[1]) and not torch.equal(plain[2], scheduled[2])
    # The Schedule node's validation bounds an objective schedule as a whole (4.8 KB took 1.5 GB and passed).
    many = ", ".join(f"{k}:(conv2:0-40000)" for k in range(2))
    assert "channels in all" in M["DDVSchedule"].VALIDATE_INPUTS("objective", many, "linear")


def test_nodes_check_cadence_memory_and_masks_before_the_first_frame(tiny, monkeypatch):
    clip = panning_clip(4)
    flow = flow_of(clip)[0]
    steps = []
    monkeypatch.setattr(core.clip.plan, "MAX_HELD_BYTES", 2 * core.clip.plan.held_frame_bytes((48, 64)))
    monkeypatch.setattr(host, "check_interrupt", lambda: steps.append(1))
    video(tiny, clip, flow, cadence=3)  # two held frames fit
    assert steps
    steps.clear()
    with pytest.raises(ValueError, match="cadence of 4 holds 3 frames of 64x48"):
        video(tiny, clip, flow, cadence=4)
    with pytest.raises(ValueError, match="2 masks, for frames 0..1; the clip's frames 0..3"):
        video(tiny, clip, flow, mask=torch.ones(2, 48, 64))
    with pytest.raises(ValueError, match="2 masks"):
        animate(tiny, image_batch(), frames=3, mask=torch.ones(2, 48, 64))
    assert not steps  # refused before any gradient step


def test_with_the_pipeline_threads_the_nodes_give_the_same_frames(tiny, monkeypatch):
    """On a GPU the pipeline's threads run (decode ahead, flow ahead, write behind) while ComfyUI runs the node
    under inference mode; forced on here, the Video and Zoom nodes fill their IMAGE with the same frames."""
    import functools
    import sys

    clip = panning_clip(n=3)
    flows = flow_of(clip)[0]
    image = image_batch()
    sequential = video(tiny, clip, flows), animate(tiny, image, zoom=1.1)
    for node in ("DDVVideoDream", "DDVAnimate"):
        module = sys.modules[M[node].__module__]
        monkeypatch.setattr(module, "render_range", functools.partial(module.render_range, overlap=True))
    threaded = video(tiny, clip, flows), animate(tiny, image, zoom=1.1)
    assert all(torch.equal(a, b) for a, b in zip(sequential, threaded))
