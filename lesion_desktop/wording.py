"""The core's sentences for the clinician, in English, yet translatable by the window without Qt in the core.

The assessment, the scope gate's reasons and the image-quality warnings are written here, in the core, so the
window, its PDF report and the command line say the same thing. The command line says it in English; the window
and the PDF say it in the clinic's language when a translation has it. So each sentence is marked with
`QT_TRANSLATE_NOOP(context, template)`: a plain function here, which `pyside6-lupdate` recognises by its name
(it reads the source, it does not import it) and lists for the translator. A template has `{name}`
placeholders only (no format specs): the numbers come formatted ("35%"), and the translation keeps the names.

The sentences are `Wording`s: a `str` (the English text, so everything that takes a string still works, the
command line and the history's database included) that also remembers its template and values. The Qt side
renders one with `QCoreApplication.translate` (`lesion_desktop.qt.translations.tr_core`). A sentence read back
from the history is a plain string again: `recognise` finds the template it was made from, so a stored
result's warnings are translated too.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

Translate = Callable[[str, str], str]  # (context, source text) -> text: QCoreApplication.translate's shape

_TEMPLATES: dict[str, str] = {}  # template -> its context, in the order they were marked
# The contexts whose sentences reach the window as plain strings (a result's stored warnings and scope reason; the
# load progress, through a Qt signal): the only ones `recognise` reads back
STORED_CONTEXTS = ("Assessment", "Scope", "ImageQuality", "Analysis")


def QT_TRANSLATE_NOOP(context: str, text: str) -> str:  # noqa: N802 - the name pyside6-lupdate looks for
    """Mark `text` for translation under `context`; returns it unchanged (and remembers it for `recognise`)."""
    if _TEMPLATES.setdefault(text, context) != context:
        raise ValueError(f"{text!r} is marked under two contexts")
    _patterns.cache_clear()
    return text


def english(context: str, text: str) -> str:
    """The `Translate` that translates nothing: the command line's."""
    return text


class Wording(str):
    """An English sentence (the str's value) that the window can render in another language."""

    def render(self, translate: Translate) -> str:
        raise NotImplementedError


class Phrase(Wording):
    """A marked template (`QT_TRANSLATE_NOOP`'s) with its values: strings, or Wordings rendered in turn."""

    context: str
    template: str
    values: dict[str, str]

    def __new__(cls, template: str, /, **values: object) -> Phrase:
        context = _TEMPLATES.get(template)
        if context is None:
            raise ValueError(f"{template!r} is not marked with QT_TRANSLATE_NOOP: no translator would see it")
        texts = {k: v if isinstance(v, str) else str(v) for k, v in values.items()}
        self = super().__new__(cls, template.format(**texts))
        self.context, self.template, self.values = context, template, texts
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy rebuild it from its template, not its English
        return (_phrase, (self.template, self.values))

    def render(self, translate: Translate) -> str:
        values = {k: render(v, translate) for k, v in self.values.items()}
        translated = translate(self.context, self.template)
        try:  # a translation with a mistyped placeholder keeps the name in braces; a malformed one is ignored
            return translated.format_map(_KeepUnknown(values))
        except (ValueError, IndexError):
            return self.template.format_map(_KeepUnknown(values))


class Joined(Wording):
    """Sentences (or clauses) side by side, each translated on its own."""

    parts: tuple[str, ...]
    sep: str

    def __new__(cls, parts: Iterable[str], sep: str = " ") -> Joined:
        kept = tuple(p for p in parts if p)
        self = super().__new__(cls, sep.join(kept))
        self.parts, self.sep = kept, sep
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Joined, (self.parts, self.sep))

    def render(self, translate: Translate) -> str:
        return self.sep.join(render(p, translate) for p in self.parts)


class Clause(Wording):
    """A sentence used inside another one: its first letter lower-case and its full stop dropped."""

    part: str

    def __new__(cls, part: str) -> Clause:
        self = super().__new__(cls, _clause(part))
        self.part = part
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Clause, (self.part,))

    def render(self, translate: Translate) -> str:
        return _clause(render(self.part, translate))


def _phrase(template: str, values: dict[str, str]) -> Phrase:
    return Phrase(template, **values)


def _clause(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:]


class _KeepUnknown(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(text: str, translate: Translate = english) -> str:
    """`text` in the language `translate` gives: a Wording translated, any other string as it is."""
    return text.render(translate) if isinstance(text, Wording) else str(text)


@cache
def _patterns() -> list[tuple[str, str, re.Pattern[str]]]:
    out = []
    for template, context in _TEMPLATES.items():
        if context not in STORED_CONTEXTS:
            continue
        pattern, seen = "", set()
        for literal, name, _spec, _conv in string.Formatter().parse(template):
            pattern += re.escape(literal)
            if name is not None:
                pattern += f"(?P={name})" if name in seen else f"(?P<{name}>.+?)"
                seen.add(name)
        out.append((context, template, re.compile(pattern, re.DOTALL)))
    # the most specific first: a template with more fixed text wins over one that is mostly placeholders
    out.sort(key=lambda t: -len(re.sub(r"\{\w+\}", "", t[1])))
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?]) (?=[A-Z])")


def recognise(text: str) -> str:
    """A plain string the core once made (read back from the history), as the Wording it was, where it can tell;
    else the string itself. A text of several sentences is recognised sentence by sentence."""
    if isinstance(text, Wording) or not text:
        return text
    found = _match(text)
    if found is not None:
        return found
    sentences = _SENTENCE_END.split(text)
    if len(sentences) > 1:
        parts = [_match(s) or s for s in sentences]
        if any(isinstance(p, Wording) for p in parts):
            return Joined(parts, " ")
    return text


def _match(text: str) -> Phrase | None:
    for _context, template, pattern in _patterns():
        m = pattern.fullmatch(text)
        if m is not None:
            return Phrase(template, **{k: recognise(v) for k, v in m.groupdict().items()})
    return None


def phrases(wording: str) -> list[tuple[str, str]]:
    """Every (context, template) a rendering of `wording` asks the translator for: for tests and checks."""
    if isinstance(wording, Phrase):
        return [(wording.context, wording.template), *(p for v in wording.values.values() for p in phrases(v))]
    if isinstance(wording, Joined):
        return [p for part in wording.parts for p in phrases(part)]
    if isinstance(wording, Clause):
        return phrases(wording.part)
    return []


def templates() -> list[tuple[str, str]]:
    """The (context, template) pairs marked so far (those of the modules imported)."""
    return [(context, template) for template, context in _TEMPLATES.items()]
