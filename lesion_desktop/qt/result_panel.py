"""The result: what it says about malignancy first, then the top diagnosis, all seven probabilities, agreement, quality.

The malignancy wording comes only from `lesion_desktop.analysis` (an `Assessment`), the same function the
PDF report and the command line use, so they never disagree. When the warning fires, or the image is too
poor to rule malignancy out, that alert is the largest thing on screen, above the top label: a 40% melanoma
risk under a "nevus" label is exactly what must not be hidden. An image judged out of scope shows no
diagnosis unless the user asks to see it anyway.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtWidgets import QFrame, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from lesion_desktop.analysis import CANNOT_RULE_OUT, OUT_OF_SCOPE, WARNING, Assessment, record_warnings
from lesion_desktop.classes import CLASSES
from lesion_desktop.qt.translations import diagnosis_name, tr_core
from lesion_desktop.qt.widgets import ProbabilityChart
from lesion_desktop.records import Record
from lesion_desktop.scope import finding_of

# (background, text, border) of the alert box per assessment level
_ALERT_STYLES = {
    WARNING: ("#c62828", "white", "#8e0000"),
    CANNOT_RULE_OUT: ("#c62828", "white", "#8e0000"),
    OUT_OF_SCOPE: ("#fff4e5", "#4e2c00", "#e0a040"),
}


translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them


def agreement_text(details: dict[str, Any], top_name: str) -> str:
    """How far the ensemble members agree, in words a clinician can weigh."""
    n = int(details.get("members_total", 0) or 0)
    if n <= 1:
        return translate("ResultPanel", "Single model: no second opinion inside the ensemble.")
    agreeing = round(float(details.get("agreement", 1.0)) * n)
    spread = float(details.get("spread", 0.0))
    if spread < 0.10:
        degree = translate("ResultPanel", "closely")
    elif spread < 0.25:
        degree = translate("ResultPanel", "moderately")
    else:
        degree = translate("ResultPanel", "widely; treat this result with extra caution")
    if n == 2:
        who = {2: translate("ResultPanel", "Both models put {name} first."),
               1: translate("ResultPanel", "Only one of the two models puts {name} first."),
               0: translate("ResultPanel", "Neither model puts {name} first; only their average does.")
               }[min(max(agreeing, 0), 2)]
    elif agreeing == n:
        who = translate("ResultPanel", "All {n} models put {name} first.")
    elif agreeing == 0:
        who = translate("ResultPanel", "No single model puts {name} first; only their average does.")
    else:
        who = translate("ResultPanel", "{k} of {n} models put {name} first.")
    who = who.format(name=top_name, n=n, k=agreeing)
    points = (translate("ResultPanel", "less than 1 percentage point") if spread < 0.01
              else translate("ResultPanel", "up to {p} percentage points").format(p=f"{spread * 100:.0f}"))
    return translate("ResultPanel", "{who} Their probabilities for it differ by {points}: they agree {degree}.").format(
        who=who, points=points, degree=degree)


def scope_note(record: Record) -> str:
    """For a result the scope check refused and the user chose to see anyway: say so, with the reason."""
    d = record.details or {}
    scope = d.get("scope") or {}
    if scope.get("in_scope") is False and d.get("shown_anyway"):
        return translate("ResultPanel", "Shown anyway at the user's request: the scope check judged this image "
                         "outside what the models have seen ({reason}). Treat the result with great caution.").format(
            reason=tr_core(finding_of(str(scope.get("reason", "")))).strip().rstrip(". ")
            or translate("ResultPanel", "no reason recorded"))
    return ""


class ResultPanel(QWidget):
    show_anyway_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName(translate("ResultPanel", "Result"))
        self.level = ""  # the assessment level shown, "" when none

        self.alert = QFrame()
        self.alert.setObjectName("riskAlert")
        self.alert.setAccessibleName(translate("ResultPanel", "Malignancy assessment"))
        self.alert_headline = QLabel()
        self.alert_headline.setWordWrap(True)
        font = self.alert_headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setBold(True)
        self.alert_headline.setFont(font)
        self.alert_text = QLabel()
        self.alert_text.setWordWrap(True)
        self.alert_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_anyway_button = QPushButton(translate("ResultPanel", "Show the result anyway"))
        self.show_anyway_button.setToolTip(translate("ResultPanel", "Show the models' output for this image; the "
                                                     "history entry is marked as shown against the scope check."))
        self.show_anyway_button.clicked.connect(self.show_anyway_requested)
        al = QVBoxLayout(self.alert)
        al.setContentsMargins(10, 8, 10, 10)
        al.addWidget(self.alert_headline)
        al.addWidget(self.alert_text)
        al.addWidget(self.show_anyway_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.alert.hide()

        self.top_label = QLabel(translate("ResultPanel", "No image analysed yet."))
        self.top_label.setWordWrap(True)
        self.top_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._base_point_size = self.top_label.font().pointSizeF()
        self._set_top_size(1.35)
        self.scope_label = QLabel()
        self.scope_label.setWordWrap(True)
        self.scope_label.setStyleSheet("color:#8a4b00; font-weight:bold;")
        self.scope_label.hide()
        self.risk_label = QLabel()
        self.risk_label.setWordWrap(True)
        self.risk_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.chart = ProbabilityChart()
        self.agreement_label = QLabel()
        self.agreement_label.setWordWrap(True)
        self.quality_label = QLabel()
        self.quality_label.setWordWrap(True)
        self.meta_label = QLabel()
        self.meta_label.setWordWrap(True)
        self.meta_label.setStyleSheet("color:#5f6368;")

        self.probs_box = QGroupBox(translate("ResultPanel", "Probabilities (malignant classes in red)"))
        pl = QVBoxLayout(self.probs_box)
        pl.addWidget(self.chart)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.alert)
        lay.addWidget(self.top_label)
        lay.addWidget(self.scope_label)
        lay.addWidget(self.risk_label)
        lay.addWidget(self.probs_box)
        for w in (self.agreement_label, self.quality_label, self.meta_label):
            lay.addWidget(w)
        lay.addStretch(1)
        self.setMinimumWidth(300)

    def _set_top_size(self, factor: float) -> None:
        font = self.top_label.font()
        font.setPointSizeF(self._base_point_size * factor)
        font.setBold(True)
        self.top_label.setFont(font)

    def _set_alert(self, level: str) -> None:
        bg, fg, border = _ALERT_STYLES[level]
        self.alert.setStyleSheet(f"QFrame#riskAlert {{background:{bg}; border:2px solid {border}; border-radius:5px;}}"
                                 f"QFrame#riskAlert QLabel {{color:{fg};}}")
        self.alert.show()

    def show_status(self, text: str) -> None:
        """No result, and a line saying what the program is doing (loading the models, analysing an image)."""
        self.clear(text)

    def show_busy(self, text: str) -> None:
        self.clear(text)

    def clear(self, text: str = "") -> None:
        self.level = ""
        self.top_label.setText(text or translate("ResultPanel", "No image analysed yet."))
        self.top_label.show()
        self._set_top_size(1.35)
        self.alert.hide()
        self.alert_headline.clear()
        self.alert_text.clear()
        self.show_anyway_button.hide()
        self.scope_label.hide()
        self.chart.set_probabilities(None)
        self.probs_box.show()
        for w in (self.risk_label, self.agreement_label, self.quality_label, self.meta_label):
            w.clear()
            w.show()

    def show_record(self, record: Record, assessment: Assessment) -> None:
        """Show a stored result with its assessment (from `analysis.assess_record`)."""
        self.level = assessment.level
        top = CLASSES[record.top_index]
        out_of_scope = assessment.level == OUT_OF_SCOPE
        if assessment.level in _ALERT_STYLES:
            self._set_alert(assessment.level)
            headline, text = tr_core(assessment.headline), tr_core(assessment.text)  # the core's words, translated
            self.alert_headline.setText(headline)
            self.alert_text.setText(text)
            self.alert.setAccessibleDescription(f"{headline}. {text}")
        else:
            self.alert.hide()
        self.show_anyway_button.setVisible(out_of_scope)
        # The diagnosis: absent for an out-of-scope image; second to the alert when there is one.
        for w in (self.top_label, self.probs_box, self.agreement_label):
            w.setVisible(not out_of_scope)
        self._set_top_size(1.1 if self.alert.isVisibleTo(self) else 1.35)
        prefix = (translate("ResultPanel", "Most likely (from a poor image)") if assessment.level == CANNOT_RULE_OUT
                  else translate("ResultPanel", "Most likely"))
        name = diagnosis_name(top)  # shown in the clinic's language; the record keeps the code
        self.top_label.setText(f"{prefix}: {name} ({top.code}), {record.probabilities[record.top_index]:.0%}")
        note = scope_note(record)
        self.scope_label.setText(note)
        self.scope_label.setVisible(bool(note))
        # Below the threshold the assessment is a plain sentence: the combined risk, and what was checked.
        self.risk_label.setText(tr_core(assessment.text) if assessment.reassures else "")
        self.risk_label.setVisible(assessment.reassures)
        self.chart.set_probabilities(None if out_of_scope else record.probabilities)
        self.agreement_label.setText(agreement_text(record.details, name))
        # The scope verdict is said above (the alert, or the 'shown anyway' note), not again as a quality note.
        notes = [w for w in record_warnings(record) if not w.lower().startswith("out of scope")]
        if notes:
            self.quality_label.setText(translate("ResultPanel", "Image quality:") + "\n"
                                       + "\n".join(f"• {tr_core(w)}" for w in notes))
            self.quality_label.setStyleSheet("color:#8a4b00; font-weight:bold;")
        else:
            self.quality_label.setText(translate("ResultPanel", "Image quality: no problems found."))
            self.quality_label.setStyleSheet("color:#2e7d32;")
        d = record.details
        parts = [translate("ResultPanel", "Models: {version}").format(version=record.model_version)]
        if "seconds" in d:
            parts.append(translate("ResultPanel", "inference {ms} ms on {device}").format(
                ms=f"{float(d['seconds']) * 1000:.0f}", device=d.get("device", "?"))
                         + (translate("ResultPanel", " with TTA") if d.get("tta") else ""))
        parts.append(record.created_local())
        if record.id is not None:
            parts.append(translate("ResultPanel", "history #{id}").format(id=record.id))
        self.meta_label.setText(" · ".join(parts))

    def summary(self) -> str:
        """Everything the panel shows, as text (what a screen reader or a test reads)."""
        parts = [w.text() for w in (self.alert_headline, self.alert_text, self.top_label, self.scope_label,
                                    self.risk_label, self.agreement_label, self.quality_label)
                 if w.isVisibleTo(self) and w.text()]
        if self.alert.isHidden():
            parts = [p for p in parts if p not in (self.alert_headline.text(), self.alert_text.text())]
        return "\n".join(parts)
