"""Strong vs weak channels on one picture: the strip in the README and the channels each pick dreams.

Run from the repository root::

    python benchmarks/channel_picks.py [--out docs/channel_picks.jpg] [--picture golden_gate.jpg]
                                       [--layer block10_dw] [--count 8] [--max-side 512]

Dreams the picture (``../shared/data``) with the offline default model and the default
settings once per pick (``LAYER:strongN``, ``LAYER:avgN``, ``LAYER:weakN``), prints which
channels each pick ranked on the picture with the strength of its dream (mean ``|out - in|``
in ``0..1`` RGB), and writes the input with the strong and weak dreams side by side as a
labelled JPEG. No timing: a correctness and looks script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import REPO, add_common_args, machine_line, pick_device, table  # noqa: E402
from look import load_picture, strip  # noqa: E402

from dream_core import DreamSettings, dream_image, load_model, parse_objective  # noqa: E402
from dream_core.ranking import bind_ranks  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PICKS = ("strong", "avg", "weak")
#: The picks shown in the strip (after the input).
SHOWN = ("strong", "weak")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--picture", default="golden_gate.jpg", help="a picture in ../shared/data")
    p.add_argument("--layer", default="block10_dw", help="the layer whose channels are ranked")
    p.add_argument("--count", type=int, default=8, help="channels per pick")
    p.add_argument("--max-side", type=int, default=512, help="the picture's longer side, pixels")
    p.add_argument("--width", type=int, default=400, help="width of each picture in the strip, pixels")
    p.add_argument("--out", default=None, help="write the strip here (JPEG), e.g. docs/channel_picks.jpg")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.quick:
        args.max_side, args.count = 96, 4
    device = pick_device(args.device)
    model = load_model("efficientnet_lite0", device=device)
    picture = load_picture(DATA / args.picture, args.max_side).to(device)
    settings = DreamSettings(num_octaves=2, num_iterations=2) if args.quick else DreamSettings()
    print(machine_line(device))
    rows, dreams = [], {}
    for pick in PICKS:
        text = f"{args.layer}:{pick}{args.count}"
        chans = bind_ranks(model, parse_objective(text, model), picture).to_string().split(":", 1)[1]
        dreams[pick] = dream_image(model, picture, text, settings)
        rows.append([text, chans, f"{float((dreams[pick] - picture).abs().mean()):.3f}"])
    print(table(["pick", "channels (ranked on the picture)", "strength"], rows,
                f"{args.picture} at {picture.shape[-1]}x{picture.shape[-2]}, default settings"))
    if args.out:
        sheet = strip([picture.cpu()] + [dreams[pick].cpu() for pick in SHOWN],
                      [args.picture] + [f"{args.layer}:{pick}{args.count}" for pick in SHOWN], width=args.width)
        sheet.save(args.out, quality=85)
        print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
