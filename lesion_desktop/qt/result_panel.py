"""The result: top diagnosis, the malignancy warning, all seven probabilities, agreement and quality.

The warning depends only on the combined probability of the malignant classes, never on which class
is on top: a 40% melanoma risk under a "nevus" label is exactly what must not be hidden.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from lesion_desktop.classes import CLASSES, MALIGNANT_CODES
from lesion_desktop.qt.widgets import ProbabilityChart
from lesion_desktop.records import Record

_MALIGNANT_NAMES = ", ".join(c.name.split(" (")[0].split(" /")[0].lower() for c in CLASSES if c.malignant)


def risk_warning(malignant_probability: float, threshold: float, top_malignant: bool) -> str:
    """The red warning text, or "" when the combined risk is below the threshold."""
    if malignant_probability < threshold:
        return ""
    text = (f"⚠ Possible malignancy: {malignant_probability:.0%} combined probability of "
            f"{_MALIGNANT_NAMES} (warning threshold {threshold:.0%}).")
    if not top_malignant:
        text += " The top label is benign, but the malignant risk is not negligible."
    return text + " Refer for specialist assessment."


def risk_summary(malignant_probability: float, threshold: float) -> str:
    """The combined malignant probability stated even when it is low: the user sees what was checked."""
    return (f"Malignant classes combined (mel + bcc + akiec): {malignant_probability:.1%}, below the "
            f"{threshold:.0%} warning threshold.")


def agreement_text(details: dict[str, Any], top_name: str) -> str:
    """How far the ensemble members agree, in words a clinician can weigh."""
    n = int(details.get("members_total", 0) or 0)
    if n <= 1:
        return "Single model: no second opinion inside the ensemble."
    agreeing = round(float(details.get("agreement", 1.0)) * n)
    spread = float(details.get("spread", 0.0))
    if spread < 0.10:
        degree = "closely"
    elif spread < 0.25:
        degree = "moderately"
    else:
        degree = "widely; treat this result with extra caution"
    if agreeing == n:
        who = f"All {n} models put {top_name} first."
    elif agreeing == 0:
        who = f"No single model puts {top_name} first; only their average does."
    else:
        who = f"{agreeing} of {n} models put {top_name} first."
    points = "less than 1 percentage point" if spread < 0.01 else f"up to {spread * 100:.0f} percentage points"
    return f"{who} Their probabilities for it differ by {points}: they agree {degree}."


class ResultPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.top_label = QLabel("No image analysed yet.")
        self.top_label.setWordWrap(True)
        font = self.top_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.top_label.setFont(font)
        self.top_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setObjectName("riskWarning")
        self.warning_label.setStyleSheet(
            "QLabel#riskWarning {background:#c62828; color:white; font-weight:bold; padding:8px; border-radius:4px;}")
        self.warning_label.hide()
        self.risk_label = QLabel()
        self.risk_label.setWordWrap(True)

        self.chart = ProbabilityChart()
        self.agreement_label = QLabel()
        self.agreement_label.setWordWrap(True)
        self.quality_label = QLabel()
        self.quality_label.setWordWrap(True)
        self.meta_label = QLabel()
        self.meta_label.setWordWrap(True)
        self.meta_label.setStyleSheet("color:#5f6368;")

        probs_box = QGroupBox("Probabilities (malignant classes in red)")
        pl = QVBoxLayout(probs_box)
        pl.addWidget(self.chart)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.top_label)
        lay.addWidget(self.warning_label)
        lay.addWidget(self.risk_label)
        lay.addWidget(probs_box)
        for w in (self.agreement_label, self.quality_label, self.meta_label):
            lay.addWidget(w)
        lay.addStretch(1)
        self.setMinimumWidth(300)

    def show_busy(self, text: str) -> None:
        self.top_label.setText(text)

    def clear(self) -> None:
        self.top_label.setText("No image analysed yet.")
        self.warning_label.hide()
        self.warning_label.clear()
        self.chart.set_probabilities(None)
        for w in (self.risk_label, self.agreement_label, self.quality_label, self.meta_label):
            w.clear()

    def show_record(self, record: Record, threshold: float) -> None:
        top = CLASSES[record.top_index]
        self.top_label.setText(f"Most likely: {top.name} ({top.code}), {record.probabilities[record.top_index]:.0%}")
        warning = risk_warning(record.malignant_probability, threshold, record.top_code in MALIGNANT_CODES)
        self.warning_label.setText(warning)
        self.warning_label.setVisible(bool(warning))
        self.risk_label.setText("" if warning else risk_summary(record.malignant_probability, threshold))
        self.risk_label.setVisible(not warning)
        self.chart.set_probabilities(record.probabilities)
        self.agreement_label.setText(agreement_text(record.details, top.name))
        if record.warnings:
            self.quality_label.setText("Image quality:\n" + "\n".join(f"• {w}" for w in record.warnings))
            self.quality_label.setStyleSheet("color:#8a4b00; font-weight:bold;")
        else:
            self.quality_label.setText("Image quality: no problems found.")
            self.quality_label.setStyleSheet("color:#2e7d32;")
        d = record.details
        parts = [f"Models: {record.model_version}"]
        if "seconds" in d:
            parts.append(f"inference {float(d['seconds']) * 1000:.0f} ms on {d.get('device', '?')}"
                         + (" with TTA" if d.get("tta") else ""))
        parts.append(record.created_local())
        if record.id is not None:
            parts.append(f"history #{record.id}")
        self.meta_label.setText(" · ".join(parts))
