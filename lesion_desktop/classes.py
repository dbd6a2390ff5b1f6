"""The seven HAM10000 diagnoses, defined once for the whole program."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    malignant: bool  # malignant or pre-malignant: the classes that must never hide behind a benign label


CLASSES: tuple[LesionClass, ...] = (
    LesionClass("akiec", "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)", True),
    LesionClass("bcc", "Basal cell carcinoma", True),
    LesionClass("bkl", "Benign keratosis-like lesion", False),
    LesionClass("df", "Dermatofibroma", False),
    LesionClass("mel", "Melanoma", True),
    LesionClass("nv", "Melanocytic nevus", False),
    LesionClass("vasc", "Vascular lesion", False),
)

CLASS_CODES: tuple[str, ...] = tuple(c.code for c in CLASSES)
NUM_CLASSES = len(CLASSES)
MALIGNANT_CODES: tuple[str, ...] = tuple(c.code for c in CLASSES if c.malignant)
MALIGNANT_INDICES: tuple[int, ...] = tuple(i for i, c in enumerate(CLASSES) if c.malignant)
MEL_INDEX = CLASS_CODES.index("mel")
_BY_CODE = {c.code: c for c in CLASSES}


def by_code(code: str) -> LesionClass:
    """Look a class up by its code, with a message that lists the valid codes."""
    try:
        return _BY_CODE[code]
    except KeyError:
        raise KeyError(f"unknown diagnosis code {code!r}; expected one of {', '.join(CLASS_CODES)}") from None
