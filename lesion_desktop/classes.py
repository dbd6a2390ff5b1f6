"""The seven HAM10000 diagnoses, defined once for the whole program.

Their names are English here, and stay English in everything recorded (the history, the CSV files, the command
line, the model manifests): they are the names the models were trained and validated under. The window shows them
in the clinic's language: each name is marked for `pyside6-lupdate` under the context "Diagnosis" (the core's own
marker, no Qt here), and the window looks it up with `lesion_desktop.qt.translations.diagnosis_name`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lesion_desktop.wording import QT_TRANSLATE_NOOP

DIAGNOSIS = "Diagnosis"  # the translation context of the names (a literal in each mark below: lupdate reads them)


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    malignant: bool  # malignant or pre-malignant: the classes that must never hide behind a benign label

    @property
    def short_name(self) -> str:
        """The name without its parenthesis: 'Actinic keratosis / intraepithelial carcinoma'."""
        return self.name.split(" (")[0]

    @property
    def brief_name(self) -> str:
        """The shortest form, for a narrow list: 'Actinic keratosis'."""
        return self.short_name.split(" /")[0]


CLASSES: tuple[LesionClass, ...] = (
    LesionClass("akiec", QT_TRANSLATE_NOOP("Diagnosis", "Actinic keratosis / intraepithelial carcinoma "
                                                        "(Bowen's disease)"), True),
    LesionClass("bcc", QT_TRANSLATE_NOOP("Diagnosis", "Basal cell carcinoma"), True),
    LesionClass("bkl", QT_TRANSLATE_NOOP("Diagnosis", "Benign keratosis-like lesion"), False),
    LesionClass("df", QT_TRANSLATE_NOOP("Diagnosis", "Dermatofibroma"), False),
    LesionClass("mel", QT_TRANSLATE_NOOP("Diagnosis", "Melanoma"), True),
    LesionClass("nv", QT_TRANSLATE_NOOP("Diagnosis", "Melanocytic nevus"), False),
    LesionClass("vasc", QT_TRANSLATE_NOOP("Diagnosis", "Vascular lesion"), False),
)

# the shorter forms the window shows where space is short, marked too (the others' short forms are their names)
_SHORTER = (QT_TRANSLATE_NOOP("Diagnosis", "Actinic keratosis / intraepithelial carcinoma"),
            QT_TRANSLATE_NOOP("Diagnosis", "Actinic keratosis"))

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
