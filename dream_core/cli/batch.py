"""``batch IN_DIR OUT_DIR --workers N``: every clip and image of a folder, same settings, on Ray workers.

Images are independent Ray tasks, run first, ``--workers`` at a time; clips follow
one after the other, each split into segments over all workers (``video --workers``).
An output that exists with no unfinished work folder next to it is finished and
skipped; an unfinished clip resumes. A summary table ends the run; the exit status
is 0 when every file is done or skipped, 1 when one failed.

Every flag reaches images as well as clips where it means something for a still
picture: ``--mask`` (a mask video's first frame), ``--guide``, and schedules, which an
image takes at frame 0 (:func:`image_args`); the video, motion and cadence flags are
the clips'. Before any work: two inputs whose outputs would be one file (``b.avi`` and
``b.mp4`` both make ``b.mp4``; ``B.png`` and ``b.png`` on a disk that ignores case) and
outputs that are an input flag's file are refused; the flags' files in the folder
(a ``--mask`` kept with the clips) are not dreamed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..distributed.runner import check_address, require_ray, run_tasks
from ..errors import DreamError, InvalidParameterError
from ..paths import same_file
from ..video.journal import WORK_SUFFIX
from ..video.output import OUTPUT_FORMATS
from .args import HelpFormatter
from .image import check_image_flags, image_args
from .paths import absolute_paths, check_distinct_paths, given_inputs, ignores_case, output_key
from .distributed import run_video_distributed
from .image import run_image
from .video import add_clip_arguments

log = logging.getLogger("dream_core")

#: Input extensions taken as clips and as images.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class BatchItem:
    """One input file, where its output goes, and how it went (``status``: todo/skipped/done/failed)."""

    source: Path
    output: Path
    kind: str
    status: str = "todo"
    seconds: float = 0.0
    note: str = ""


def batch_items(in_dir: Path, out_dir: Path, args: argparse.Namespace | None = None) -> list[BatchItem]:
    """The clips and images directly in ``in_dir`` (sorted by name) and their outputs in ``out_dir``.

    A clip keeps its container when the writer supports it, else becomes ``.mp4``; an image keeps its
    name. An output that exists with no unfinished work folder is marked ``skipped``; so is a file the
    flags of ``args`` name (a ``--mask`` in the folder).

    Raises:
        InvalidParameterError: two inputs with one output, or an output that is a flag's file.
    """
    items = []
    for path in sorted(p for p in in_dir.iterdir() if p.is_file()):
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            out = out_dir / (path.name if suffix in OUTPUT_FORMATS else path.stem + ".mp4")
            items.append(BatchItem(path, out, "video"))
        elif suffix in IMAGE_SUFFIXES:
            items.append(BatchItem(path, out_dir / path.name, "image"))
    _check_outputs(items, out_dir, args)
    flagged = {path: flag for flag, path in given_inputs(args)} if args is not None else {}
    for item in items:
        flag = next((f for p, f in flagged.items() if same_file(item.source, p)), None)
        if flag is not None:
            item.status, item.note = "skipped", f"the {flag} file"
        elif item.output.exists() and not item.output.with_name(item.output.name + WORK_SUFFIX).exists():
            item.status = "skipped"
            item.note = "finished earlier"
    return items


def _check_outputs(items: list[BatchItem], out_dir: Path, args: argparse.Namespace | None) -> None:
    """Refuse inputs that map to one output (extensions, or case on a disk that ignores it) and outputs that
    are a flag's file or hold one in their work folder, before any work."""
    fold = out_dir.is_dir() and ignores_case(out_dir)
    by_output: dict[str, list[BatchItem]] = {}
    for item in items:
        by_output.setdefault(output_key(item.output, fold), []).append(item)
    clashes = [group for group in by_output.values() if len(group) > 1]
    if clashes:
        pairs = "; ".join(" and ".join(f"'{i.source.name}'" for i in group) + f" -> '{group[0].output.name}'"
                          for group in clashes)
        raise InvalidParameterError(
            f"Two inputs would be written to one output, and the second would overwrite the first: {pairs}. "
            "Rename one of each, or dream them into separate folders.", parameter="output",
        )
    if args is not None:
        for item in items:
            check_distinct_paths(argparse.Namespace(**{**vars(args), "input": None}), output=item.output)


def summary_table(items: list[BatchItem]) -> str:
    """A plain-text table of the batch: file, kind, status, seconds, note."""
    rows = [("file", "kind", "status", "seconds", "note")]
    rows += [(i.source.name, i.kind, i.status, f"{i.seconds:.1f}", i.note) for i in items]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _with(args: argparse.Namespace, item: BatchItem) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "input": str(item.source), "output": str(item.output)})


def _image_task(args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    run_image(args)
    return time.perf_counter() - t0


def run_batch(args: argparse.Namespace) -> int:
    """Dream every clip and image of ``args.input_dir`` into ``args.output_dir``."""
    require_ray()
    if args.ray_address:
        check_address(args.ray_address)  # within seconds, before any work
    args = absolute_paths(args)  # workers read and write these from their own working folders
    in_dir, out_dir = Path(args.input_dir).absolute(), Path(args.output_dir).absolute()
    if not in_dir.is_dir():
        raise InvalidParameterError(f"Input folder '{in_dir}' does not exist or is not a folder.")
    if in_dir.resolve() == out_dir.resolve():
        raise InvalidParameterError(f"The output folder is the input folder '{in_dir}'; choose another one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    items = batch_items(in_dir, out_dir, args)
    todo = [i for i in items if i.status == "todo"]
    log.info("%d file(s) in %s: %d to dream, %d skipped.", len(items), in_dir, len(todo), len(items) - len(todo))
    images = [i for i in todo if i.kind == "image"]
    still = image_args(args)  # schedules at frame 0; checked before any image is dreamed
    if images:
        check_image_flags(still)
        def done(index: int, result: object, error: BaseException | None) -> None:
            item = images[index]
            item.status, item.note = ("failed", str(error).splitlines()[0][:80]) if error else ("done", "")
            item.seconds = 0.0 if error else float(result)  # type: ignore[arg-type]
            log.info("%s: %s", item.source.name, item.status)

        run_tasks([functools.partial(_image_task, _with(still, i)) for i in images], workers=args.workers,
                  address=args.ray_address, threads=args.threads, max_retries=args.max_retries, on_done=done)
    for item in (i for i in todo if i.kind == "video"):
        t0 = time.perf_counter()
        try:
            run_video_distributed(_with(args, item))
            item.status = "done"
        except DreamError as exc:
            item.status, item.note = "failed", str(exc).splitlines()[0][:80]
            log.error("%s: %s", item.source.name, exc)
        item.seconds = time.perf_counter() - t0
    print(summary_table(items))
    return 1 if any(i.status == "failed" for i in items) else 0


def add_batch_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("batch", help="dream every clip and image of a folder on Ray workers",
                       description="Dream every clip (.mp4 .mov .mkv .m4v .avi .webm) and image (.png .jpg .jpeg "
                                   ".webp) of a folder with the same settings on Ray workers; finished outputs are "
                                   "skipped, unfinished clips resume.",
                       formatter_class=HelpFormatter)
    p.add_argument("input_dir", help="folder of clips and images")
    p.add_argument("output_dir", help="folder for the results (created; same file names)")
    add_clip_arguments(p)
    p.set_defaults(func=run_batch)
