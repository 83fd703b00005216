"""dream_core.errors: core errors name their parameter; front ends add their remedy; core words stay core."""

import re

import pytest

from dream_core.errors import DreamError, InvalidParameterError, with_remedy
from pack_loader import ROOT


def test_with_remedy_appends_the_front_ends_sentence_for_the_parameter():
    exc = InvalidParameterError("num_octaves must be >= 1; got 0.", parameter="num_octaves")
    better = with_remedy(exc, {"num_octaves": "Set it with --octaves."})
    assert type(better) is InvalidParameterError and better.parameter == "num_octaves"
    assert str(better) == "num_octaves must be >= 1; got 0. Set it with --octaves."
    assert with_remedy(exc, {"jitter": "..."}) is exc
    assert with_remedy(DreamError("no parameter"), {"": "never"}).parameter is None


# Words that belong to a front end: CLI commands and flags, ComfyUI nodes and folders.
FRONT_END_WORDS = re.compile(r"python -m dream_core|--[a-z][a-z-]+|ComfyUI's|models/deepdream|\bnode\b|image command")


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "dream_core").rglob("*.py") if p.parent.name != "cli"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_core_error_messages_name_core_things_only(path):
    text = path.read_text(encoding="utf-8")
    # Each raise (or weights hint) up to the end of its statement: the next line back at its own indentation.
    starts = [m.start() for m in re.finditer(r"raise \w+Error\(|weights_hint=", text)]
    statements = [re.split(r"\n(?=\s{0,12}[^\s\"f])", text[start:start + 800])[0] for start in starts]
    offenders = [s for s in statements if FRONT_END_WORDS.search(s)]
    assert not offenders, offenders
