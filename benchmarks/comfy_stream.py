"""DeepDream Video (streaming) in a real ComfyUI: server memory against clip length, and Cancel + queue again.

Needs a ComfyUI started by ``../shared/tools/comfy/harness.py start --pack .`` (its state folder, env
``COMFY_HARNESS_STATE`` or ``--state``). The test clips are made here with PyAV from balcony_view.mp4:
its 107 frames at 640x360, looped to the length asked, at 30000/1001 fps, with its audio looped along.

    python benchmarks/comfy_stream.py memory --frames 1000,3000      # LoadVideo -> stream node -> SaveVideo
    python benchmarks/comfy_stream.py resume --frames 90              # Cancel mid-run, queue again, compare

``memory``: resets the server's peak RSS (``/proc/PID/clear_refs``), queues the prompt, samples ``VmRSS``
every 0.2 s and reads ``VmHWM`` at the end; then checks that SaveVideo's file has every frame, the exact
rate and the audio. The dream is a tiny one (:data:`TINY`: EfficientNet-Lite0's stem, 1 octave x 1
iteration, stable mode with its flow, at 640x360) so thousands of frames finish on a CPU: the point is
memory against length. Start a fresh server before each length, so its growth includes loading the model.

``resume``: the same prompt uninterrupted (lossless, stable mode, flow), then again under another
prefix, interrupted (POST /interrupt) once a segment is committed, queued again, and compared frame for
frame with the uninterrupted file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLIP = REPO.parent / "shared" / "data" / "balcony_view.mp4"
RATE = Fraction(30000, 1001)
SIZE = (640, 360)
#: The tiny dream of the memory runs: stable mode (DIS flow between consecutive frames, the carried dream
#: warped), EfficientNet-Lite0's stem, 1 octave x 1 iteration, no colour coherence, plain steps, at the
#: clip's 640x360: a few frames a second on a busy 2-core CPU, every part of the pipeline running.
TINY = {"mode": "stable", "num_octaves": 1, "num_iterations": 1, "layer": "stem", "colour_coherence": 0.0,
        "step_rule": "plain"}


# --------------------------------------------------------------------------- the test clip


def make_clip(dst: Path, frames: int, src: Path = CLIP, size: tuple[int, int] = SIZE, rate: Fraction = RATE) -> Path:
    """``frames`` frames of ``src`` at ``size`` looped, at ``rate``, with ``src``'s audio looped to the same length."""
    import av
    import numpy as np

    if dst.is_file():
        return dst
    with av.open(str(src)) as inp:
        pictures = [f.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
                    for f in inp.decode(video=0)]
    with av.open(str(src)) as inp:
        stream = inp.streams.audio[0]
        sample_rate = stream.sample_rate
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in inp.decode(audio=0)]).astype(np.float32)
    tmp = dst.with_name(dst.name + ".partial.mp4")
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"preset": "veryfast", "crf": "20"}
        audio = out.add_stream("aac", rate=sample_rate)
        audio.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        need = int(round(frames / rate * sample_rate))
        looped = np.resize(sound, need)[None]
        for start in range(0, need, sample_rate):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(looped[:, start:start + sample_rate]),
                                               format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = sample_rate, start
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))
    os.replace(tmp, dst)
    return dst


# --------------------------------------------------------------------------- the server


class Server:
    """The harness's ComfyUI: its URL, process and folders."""

    def __init__(self, state: Path) -> None:
        info = json.loads((state / "server.json").read_text())
        self.url = f"http://127.0.0.1:{info['port']}"
        self.pid = int(info["pid"])
        self.base = Path(info["base"])

    def http(self, path: str, body: Optional[dict] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def status(self, key: str) -> int:
        """``VmRSS`` / ``VmHWM`` of the server process, bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def queue(self, prompt: dict) -> str:
        answer = self.http("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
        if answer.get("node_errors"):
            raise RuntimeError(f"prompt rejected: {answer['node_errors']}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 7200) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            entry = self.http(f"/history/{prompt_id}").get(prompt_id)
            if entry:  # ComfyUI writes the history entry when the prompt ends (success, error or interrupted)
                return entry
            time.sleep(0.5)
        raise TimeoutError(prompt_id)

    def defaults(self, node: str) -> dict[str, Any]:
        info = self.http(f"/object_info/{node}")[node]["input"]
        out = {}
        for section in ("required", "optional"):
            for name, spec in info.get(section, {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if isinstance(spec[0], list):
                    out[name] = opts.get("default", spec[0][0])
                elif spec[0] == "COMBO":
                    out[name] = opts.get("default", opts.get("options", [None])[0])
                elif "default" in opts:
                    out[name] = opts["default"]
        return out


def prompt(server: Server, clip: str, prefix: str, **over: Any) -> dict:
    """LoadVideo -> DeepDream Model Loader -> Layers -> DeepDream Video (streaming) (+ DeepDream Settings for the
    settings it carries) -> SaveVideo."""
    layer = over.pop("layer", None)
    settings_defaults = server.defaults("DDVSettings")
    settings = {k: over.pop(k) for k in list(over) if k in settings_defaults}
    stream = {**server.defaults("DDVVideoStream"), "filename_prefix": f"{prefix}/dream", **over}
    stream.update({"video": ["1", 0], "model": ["2", 0]})
    nodes = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": clip}},
        "2": {"class_type": "DDVModelLoader", "inputs": {"model_name": "efficientnet_lite0", "weights": "(default)"}},
        "4": {"class_type": "DDVVideoStream", "inputs": stream},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": f"{prefix}/saved",
                                                    "format": "auto", "codec": "auto"}},
    }
    if layer:
        nodes["3"] = {"class_type": "DDVLayerSelect", "inputs": {"model": ["2", 0], "layer": layer, "channels": "",
                                                                 "weight": 1.0}}
        stream["objective"] = ["3", 0]
    if settings:
        nodes["6"] = {"class_type": "DDVSettings", "inputs": {**settings_defaults, **settings}}
        stream["settings"] = ["6", 0]
    return nodes


def saved_file(server: Server, entry: dict) -> Path:
    for output in entry.get("outputs", {}).values():
        for item in output.get("images", []):
            return server.base / "output" / item.get("subfolder", "") / item["filename"]
    raise RuntimeError(f"no saved file in {json.dumps(entry)[:2000]}")


def describe(path: Path) -> dict[str, Any]:
    """Frames, rate and audio duration of a file (packets counted)."""
    import av

    from dream_core.video import probe_video

    info = probe_video(path)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0] if c.streams.audio else None
        audio = float(sum(p.duration or 0 for p in c.demux(stream) if p.size) * stream.time_base) if stream else 0.0
    return {"frames": info.num_frames, "rate": info.frame_rate, "size": f"{info.width}x{info.height}",
            "audio_s": audio}


# --------------------------------------------------------------------------- measurements


def measure_memory(server: Server, frames: int, source: Path) -> dict[str, Any]:
    name = f"stream_mem_{frames}.mp4"
    make_clip(server.base / "input" / name, frames, source)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(server.status("VmRSS"))
            time.sleep(0.2)

    before = server.status("VmRSS")
    server.reset_peak()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.monotonic()
    entry = server.wait(server.queue(prompt(server, name, f"mem{frames}_{int(time.time())}", **TINY)))
    seconds = time.monotonic() - started
    done.set()
    thread.join()
    peak = max(server.status("VmHWM"), *samples)
    after = server.status("VmRSS")
    if entry["status"].get("status_str") != "success":
        raise RuntimeError(json.dumps(entry["status"])[:3000])
    out = describe(saved_file(server, entry))
    return {"frames": frames, "rss_before": before, "peak": peak, "growth": peak - before, "seconds": seconds,
            "rss_after": after,
            "out": out, "expected_audio": float(frames / RATE)}


def run_resume(server: Server, frames: int, source: Path) -> dict[str, Any]:
    import numpy as np

    from dream_core.video import read_frames

    name = f"stream_resume_{frames}.mp4"
    make_clip(server.base / "input" / name, frames, source, size=(320, 180))
    tag = int(time.time())
    settings = {"mode": "stable", "num_octaves": 2, "num_iterations": 2, "crf": 0, "layer": "block1_dw"}
    full = server.wait(server.queue(prompt(server, name, f"full_{tag}", **settings)))
    cut_prompt = prompt(server, name, f"cut_{tag}", **settings)
    first = server.queue(cut_prompt)
    work = None
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:  # wait for the first committed segment, then Cancel
        found = list((server.base / "output" / f"cut_{tag}").glob("*.dream-work/manifest.json"))
        if found and json.loads(found[0].read_text()).get("frames_done", 0) > 0:
            work = found[0].parent
            time.sleep(1.0)  # into the next segment
            break
        time.sleep(0.2)
    pressed = time.monotonic()
    server.http("/interrupt", {"prompt_id": first})
    cancelled = server.wait(first)
    stop_seconds = time.monotonic() - pressed  # history is polled every 0.5 s
    kept = json.loads((work / "manifest.json").read_text())["frames_done"] if work else None
    again = server.wait(server.queue(cut_prompt))
    a = np.stack(list(read_frames(saved_file(server, full))))
    b = np.stack(list(read_frames(saved_file(server, again))))
    return {"frames": frames, "cancel_status": cancelled["status"].get("status_str"),
            "cancel_messages": [m[0] for m in cancelled["status"].get("messages", [])],
            "kept_at_cancel": kept, "stopped_within_s": round(stop_seconds, 2), "work_folder_gone": not (work and work.exists()),
            "equal": bool(a.shape == b.shape and np.array_equal(a, b)), "shape": list(a.shape),
            "again_status": again["status"].get("status_str")}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("memory", "resume", "clip"))
    p.add_argument("--frames", default="1000,3000", help="clip lengths (comma-separated)")
    p.add_argument("--state", default=os.environ.get("COMFY_HARNESS_STATE",
                                                     os.path.join(tempfile.gettempdir(), "comfy-harness")))
    p.add_argument("--out", default=None, help="clip: where to write it")
    p.add_argument("--source", default=str(CLIP), help="the clip to loop (balcony_view.mp4)")
    args = p.parse_args(argv)
    lengths = [int(x) for x in args.frames.split(",")]
    if args.what == "clip":
        print(make_clip(Path(args.out), lengths[0], Path(args.source)))
        return 0
    server = Server(Path(args.state))
    print(f"Machine: {os.cpu_count()} CPUs; ComfyUI pid {server.pid}")
    if args.what == "resume":
        print(json.dumps(run_resume(server, lengths[0], Path(args.source)), indent=1, default=str))
        return 0
    print("| frames | RSS before MiB | peak MiB | growth MiB | RSS after MiB | seconds | output frames | rate | "
          "audio s (expected) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in lengths:
        r = measure_memory(server, n, Path(args.source))
        o = r["out"]
        print(f"| {n} | {r['rss_before'] / 2**20:.0f} | {r['peak'] / 2**20:.0f} | {r['growth'] / 2**20:.0f} | "
              f"{r['rss_after'] / 2**20:.0f} | {r['seconds']:.0f} | {o['frames']} | {o['rate']} | {o['audio_s']:.2f} ({r['expected_audio']:.2f}) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
