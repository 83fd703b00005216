"""DeepDream Video (streaming), called directly with a stand-in VIDEO (no ComfyUI needed): a file in, a
file out with every frame, the rate and the audio; Cancel and a queue again continue to the same frames;
an out-of-memory error continues once with every other model unloaded, then says what to change."""

from __future__ import annotations

import io
import types
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import textured_image
from pack_loader import load_pack
from test_nodes import defaults, tiny  # noqa: F401 (tiny: a fixture)
from video_clips import audio_seconds

pack = load_pack()
core = pack.dream_core
nodes = pack.nodes
host = nodes.comfy_adapter
Node = pack.NODE_CLASS_MAPPINGS["DDVVideoStream"]
stream_nodes = nodes.stream_nodes
FileVideo = nodes.video_files.FileVideo

NTSC = Fraction(30000, 1001)
QUICK = {"num_octaves": 2, "num_iterations": 2, "jitter": 4}  # through the DeepDream Settings input
FAST = {"settings": QUICK, "crf": 0}


def textured_clip(path: Path, n: int = 6, h: int = 48, w: int = 64, audio: bool = True) -> Path:
    """``n`` frames of a texture panning 3 px per frame at 30000/1001 fps, with a 440 Hz tone."""
    wide = textured_image(h, w + 3 * n, seed=2)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=NTSC)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "0"}
        sound = out.add_stream("aac", rate=44100) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for t in range(n):
            rgb = (wide[0, :, :, 3 * t: 3 * t + w].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            t = np.arange(int(44100 * n / NTSC)) / 44100
            samples = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                                 format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 44100, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode(None))
    return path



@pytest.fixture
def outdir(tmp_path, monkeypatch):
    """ComfyUI's output and temp folders, in the test's own folder."""
    monkeypatch.setattr(host, "output_directory", lambda: tmp_path / "output")
    monkeypatch.setattr(host, "temp_directory", lambda: tmp_path / "temp")
    return tmp_path / "output"


@pytest.fixture
def source(tmp_path):
    return textured_clip(tmp_path / "pan.mp4")


def run(model, video, **over):
    args = {**defaults(Node), **FAST, **over}
    if "settings" in over:
        args["settings"] = {**QUICK, **over["settings"]}
    with torch.inference_mode():
        return Node().dream(video, model, **args)[0]


def frames_of(path) -> np.ndarray:
    return np.stack(list(core.video.read_frames(path)))


class Dreams:
    """Counts :meth:`FrameDreamer.dream_next` calls; raises ``error`` at call ``fail_at`` (1-based)."""

    def __init__(self, monkeypatch, fail_at: int = 0, error: type[BaseException] = KeyboardInterrupt) -> None:
        self.calls, self.fail_at, self.error = 0, fail_at, error
        original = core.clip.FrameDreamer.dream_next
        me = self

        def counting(dreamer, *args, **kwargs):
            me.calls += 1
            if me.calls == me.fail_at:
                raise me.error("simulated")
            return original(dreamer, *args, **kwargs)

        monkeypatch.setattr(core.clip.FrameDreamer, "dream_next", counting)


def test_streams_a_file_to_a_file_with_every_frame_the_rate_and_the_audio(tiny, source, outdir, monkeypatch,
                                                                         tmp_path):
    """The output is the library's frame loop over the decoded frames with the flow estimated between them,
    encoded losslessly at the source's exact rate with its audio; nothing is left in the work folder."""
    dreams = Dreams(monkeypatch)
    video = run(tiny, FileVideo(source))
    out = Path(video.get_stream_source())
    assert out.parent == outdir / "deepdream" and out.name.startswith("stream_pan_") and out.suffix == ".mp4"
    info = core.video.probe_video(out)
    assert info.num_frames == 6 and info.frame_rate == NTSC and (info.width, info.height) == (64, 48)
    assert info.has_audio and abs(audio_seconds(out) - 6 / float(NTSC)) < 0.05
    assert dreams.calls == 6 and not list(outdir.rglob("*.dream-work"))

    args = {k: v for k, v in defaults(Node).items() if k != "settings"}
    settings, clip = nodes.common.merge_settings(args, QUICK)
    raw = [core.image_io.from_uint8_hwc(a) for a in core.video.read_frames(source)]
    with core.FrameDreamer(tiny, None, settings, clip) as dreamer:
        with core.video.VideoWriter(tmp_path / "loop.mp4", NTSC, crf=0, resume=False) as writer:
            for done in core.dream_clip(dreamer, enumerate(raw), core.flow.FlowEstimator("dis")):
                writer.write(core.image_io.to_uint8_hwc(done.image))
    assert np.array_equal(frames_of(out), frames_of(tmp_path / "loop.mp4"))


def test_cancel_then_queue_again_continues_to_the_same_frames(tiny, source, outdir, monkeypatch, tmp_path):
    full = Path(run(tiny, FileVideo(source), filename_prefix="full/run").get_stream_source())

    class Interrupted(Exception):
        pass

    pressed = {"cancel": False, "checks_after": 0}

    def throw_if_interrupted():
        if pressed["cancel"]:
            pressed["checks_after"] += 1
            raise Interrupted()

    fake = types.SimpleNamespace(InterruptProcessingException=Interrupted,
                                 throw_exception_if_processing_interrupted=throw_if_interrupted)
    monkeypatch.setattr(host, "_model_management", lambda: fake)
    monkeypatch.setattr(host, "compute_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(host, "offload_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(host, "soft_empty_cache", lambda: None)
    monkeypatch.setattr(host, "out_of_memory_types", lambda: (torch.OutOfMemoryError,))
    original = core.clip.FrameDreamer.dream_next
    finished = []

    def cancel_during_frame_3(dreamer, raw, *args, **kwargs):
        pressed["cancel"] = len(finished) == 3  # Cancel pressed while frame 3 dreams
        out = original(dreamer, raw, *args, **kwargs)
        finished.append(out)
        return out

    monkeypatch.setattr(core.clip.FrameDreamer, "dream_next", cancel_during_frame_3)
    given_back = []
    monkeypatch.setattr(host, "give_back", lambda model, released=None: given_back.append((model, released)))
    with pytest.raises(Interrupted):
        run(tiny, FileVideo(source))
    assert len(finished) == 3 and pressed["checks_after"] == 1  # stopped at the first step check of frame 3
    assert [m for m, _ in given_back] == [tiny]  # the model handed back after the Cancel too
    copies = core.fastpath.execution_copies
    assert copies(tiny)
    given_back[0][1]()  # what give_back calls when the model left the GPU: its execution copies go
    assert not copies(tiny)
    work = next((outdir / "deepdream").glob("*.dream-work"))
    assert not work.with_suffix("").exists()  # no output file yet; frames 0..2 committed
    monkeypatch.undo()

    monkeypatch.setattr(host, "output_directory", lambda: outdir)
    monkeypatch.setattr(host, "temp_directory", lambda: tmp_path / "temp")
    again = Dreams(monkeypatch)
    out = Path(run(tiny, FileVideo(source)).get_stream_source())
    assert out == work.with_name(work.name[: -len(".dream-work")])
    assert again.calls == 3  # frames 3..5: the queued-again run continued after the committed frames
    assert np.array_equal(frames_of(out), frames_of(full))  # frame for frame the uninterrupted run (lossless)
    assert core.video.probe_video(out).has_audio and not work.exists()


def test_a_changed_setting_starts_over_and_a_finished_file_is_handed_on(tiny, source, outdir, monkeypatch):
    first = Path(run(tiny, FileVideo(source)).get_stream_source())
    dreams = Dreams(monkeypatch)
    assert Path(run(tiny, FileVideo(source)).get_stream_source()) == first and dreams.calls == 0
    other = Path(run(tiny, FileVideo(source), seed=7).get_stream_source())
    assert other != first and dreams.calls == 6  # another file, dreamed from the first frame
    assert not np.array_equal(frames_of(other), frames_of(first))
    ranged = Path(run(tiny, FileVideo(source), start_frame=2, frame_count=3).get_stream_source())
    assert core.video.probe_video(ranged).num_frames == 3 and ranged not in (first, other)


def test_the_settings_input_and_a_mask_video_reach_the_loop(tiny, source, outdir, monkeypatch, tmp_path):
    """The DeepDream Settings input is merged into what runs (it wins over the node's own widgets) and into the
    run's name; a black mask video keeps the frames as they are."""
    by_widget = Path(run(tiny, FileVideo(source), learning_rate=0.02).get_stream_source())
    dreams = Dreams(monkeypatch)
    by_input = Path(run(tiny, FileVideo(source), learning_rate=0.3, settings={"learning_rate": 0.02})
                    .get_stream_source())
    assert by_input == by_widget and dreams.calls == 0  # the same settings ran: the finished file is handed on
    fewer = Path(run(tiny, FileVideo(source), settings={"num_iterations": 1}).get_stream_source())
    assert fewer != by_widget and dreams.calls == 6

    black = tmp_path / "black.mp4"
    with core.video.VideoWriter(black, NTSC, crf=0, resume=False) as writer:
        for _ in range(6):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    kept = frames_of(run(tiny, FileVideo(source), mask_video=FileVideo(black), settings={"colour_coherence": 0.0})
                     .get_stream_source()).astype(float)
    with core.video.VideoWriter(tmp_path / "raw.mp4", NTSC, crf=0, resume=False) as writer:
        for frame in core.video.read_frames(source):
            writer.write(frame)  # the source's frames through the same encoder, undreamed
    raw, dreamed = frames_of(tmp_path / "raw.mp4").astype(float), frames_of(by_widget).astype(float)
    assert np.abs(kept - raw).mean() < 0.5 and np.abs(dreamed - raw).mean() > 5.0


def test_out_of_memory_continues_once_with_the_other_models_unloaded(tiny, source, outdir, monkeypatch):
    full = frames_of(run(tiny, FileVideo(source), filename_prefix="full/run").get_stream_source())
    rooms = []
    real_room = host.make_room

    def room(model, need):
        rooms.append(need)
        return real_room(model, need)

    monkeypatch.setattr(host, "make_room", room)
    dreams = Dreams(monkeypatch, fail_at=4, error=torch.OutOfMemoryError)
    out = run(tiny, FileVideo(source)).get_stream_source()
    assert len(rooms) == 2 and rooms[1] > rooms[0] >= 64 * 48 * 12  # the retry asks for every other model's room
    assert dreams.calls == 4 + 3  # 3 frames kept, the failed one and the 2 after it dreamed on the retry
    assert np.array_equal(frames_of(out), full)

    rooms.clear()
    Dreams(monkeypatch, fail_at=1, error=torch.OutOfMemoryError)
    monkeypatch.setattr(core.clip.FrameDreamer, "dream_next",
                        lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(core.errors.DeviceMemoryError) as err:
        run(tiny, FileVideo(source), seed=3)
    message = str(err.value)
    assert len(rooms) == 2 and "max_side" in message and "tile_size (now 1024)" in message and "--lowvram" in message


def test_video_values_that_are_not_files(tiny, source, outdir, tmp_path):
    """An in-memory VIDEO (BytesIO) and one that can only save itself (CreateVideo's) are written once to the
    temp folder, named by content, and dreamed like a file."""
    data = source.read_bytes()

    class InMemory:
        def get_stream_source(self):
            return io.BytesIO(data)

    class SavesOnly:
        def save_to(self, path, *args, **kwargs):
            Path(path).write_bytes(data)

    spool = tmp_path / "temp" / "deepdream_sources"
    a = nodes.video_files.video_file(InMemory(), spool)
    b = nodes.video_files.video_file(SavesOnly(), spool)
    assert a == b and a.parent == spool and a.read_bytes() == data
    assert [p.name for p in spool.iterdir()] == [a.name]
    out = run(tiny, InMemory(), num_iterations=1).get_stream_source()
    assert core.video.probe_video(out).num_frames == 6
    with pytest.raises(core.InvalidParameterError, match="must be a VIDEO"):
        run(tiny, torch.zeros(6, 48, 64, 3))
    with pytest.raises(core.InvalidParameterError, match="outside the output folder"):
        run(tiny, FileVideo(source), filename_prefix="../../escape")


def test_make_room_frees_what_the_dream_needs_and_give_back_returns_it(monkeypatch):
    """Inside ComfyUI on a GPU: free_memory(model size + frames) before, the model back on the offload device,
    its copies released and the cache emptied after; --novram unloads everything; --cpu frees nothing."""
    calls = []

    class Model(torch.nn.Module):
        """Records where it is sent (a CUDA device cannot be made here)."""

        where = torch.device("cpu")

        def to(self, device):
            calls.append(("to", str(device)))
            self.where = torch.device(device)
            return self

        def parameters(self, recurse=True):
            yield types.SimpleNamespace(device=self.where)

    VRAM = types.SimpleNamespace(NO_VRAM="no", NORMAL_VRAM="normal")
    mm = types.SimpleNamespace(
        VRAMState=VRAM, vram_state=VRAM.NORMAL_VRAM, module_size=lambda m: 1000,
        get_torch_device=lambda: torch.device("cuda", 0), unet_offload_device=lambda: torch.device("cpu"),
        free_memory=lambda need, dev: calls.append(("free", need, str(dev))),
        soft_empty_cache=lambda: calls.append(("empty",)),
    )
    monkeypatch.setattr(host, "_model_management", lambda: mm)
    model = Model()
    assert host.make_room(model, 5000) == torch.device("cuda", 0)
    host.give_back(model, released=lambda: calls.append(("released",)))
    assert calls == [("free", 6000.0, "cuda:0"), ("to", "cuda:0"), ("to", "cpu"), ("released",), ("empty",)]

    calls.clear()
    mm.vram_state = VRAM.NO_VRAM
    host.make_room(Model(), 5000)
    assert calls[0][0] == "free" and calls[0][1] >= 1e30

    calls.clear()
    mm.get_torch_device = mm.unet_offload_device  # --cpu
    model = Model()
    assert host.make_room(model, 5000).type == "cpu"
    host.give_back(model, released=lambda: calls.append(("released",)))
    assert calls == [("to", "cpu"), ("to", "cpu"), ("empty",)]  # nothing freed, nothing released


def test_make_room_moves_the_model_outside_inference_mode(tiny, monkeypatch):
    """ComfyUI runs nodes under inference_mode: parameters moved there would be inference tensors, which
    autograd cannot save for the dream's backward pass."""
    mm = types.SimpleNamespace(VRAMState=types.SimpleNamespace(NO_VRAM="no"), vram_state="normal",
                               module_size=lambda m: 0, get_torch_device=lambda: torch.device("meta"),
                               free_memory=lambda need, dev: None)
    monkeypatch.setattr(host, "_model_management", lambda: mm)
    with torch.inference_mode():
        assert host.make_room(tiny, 0).type == "meta"
    assert tiny.device.type == "meta" and not any(p.is_inference() for p in tiny.parameters())


def test_with_the_pipeline_threads_the_stream_node_writes_the_same_frames(tiny, source, outdir, monkeypatch):
    """On a GPU the decoder, the flow and the encoder run on threads while ComfyUI runs the node in inference
    mode; forced on here (the first file deleted, so the node dreams again), the file holds the same frames."""
    import functools
    import sys

    out = Path(run(tiny, FileVideo(source)).get_stream_source())
    sequential = frames_of(out)
    out.unlink()
    module = sys.modules[Node.__module__]
    monkeypatch.setattr(module, "render_range", functools.partial(module.render_range, overlap=True))
    threaded = Path(run(tiny, FileVideo(source)).get_stream_source())
    assert threaded == out and np.array_equal(frames_of(threaded), sequential)
