"""What the About box and the settings dialog say about the software and the models in use.

The About box speaks plain language (`about_html`); the ML detail is one click away (`technical_html`).

Read straight from the manifests, so what the user sees is what the loaded files claim, including
their training data and licence (HAM10000 is CC BY-NC: the models inherit it).
"""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication

from lesion_desktop import __version__
from lesion_desktop.edition import name as edition_name

if TYPE_CHECKING:  # the lite edition has no PyTorch
    from lesion_desktop.inference import Engine as EnsembleEngine

translate = QCoreApplication.translate  # a literal context and text in each call: pyside6-lupdate finds them
# Marked here, translated where shown (the window's banner, the About box, the PDF report): translate("About", ...)
DISCLAIMER = QT_TRANSLATE_NOOP("About", "Decision support only — not a diagnosis. A clinician must make the "
                               "diagnosis.")
MODELS_LICENCE_NOTE = QT_TRANSLATE_NOOP(
    "About", "Non-commercial terms: research, teaching, audits and evaluating the program are within them; using "
    "these models in fee-paying patient care, or in a product or service that is sold, may count as commercial use. "
    "Before such use, ask your legal adviser, or use models your clinic trained on images it has the rights to use "
    "(Retrain). Not legal advice.")
_METRIC_NAMES = (("balanced_accuracy", QT_TRANSLATE_NOOP("About", "balanced accuracy")),
                 ("melanoma_recall", QT_TRANSLATE_NOOP("About", "melanoma recall")),
                 ("accuracy", QT_TRANSLATE_NOOP("About", "accuracy")),
                 ("macro_auc", QT_TRANSLATE_NOOP("About", "macro AUC")))


def disclaimer() -> str:
    """The disclaimer in the clinic's language."""
    return translate("About", DISCLAIMER)


def metrics_line(m: Any) -> str:
    if not isinstance(m, dict):
        return ""
    ci = m.get("intervals") if isinstance(m.get("intervals"), dict) else {}

    def interval(key: str) -> str:
        iv = ci.get(key)
        if isinstance(iv, list) and len(iv) == 2 and all(isinstance(x, int | float) for x in iv):
            return translate("About", " (95% interval {low}–{high})").format(low=f"{iv[0]:.3f}", high=f"{iv[1]:.3f}")
        return ""

    parts = [f"{translate('About', label)} {m[key]:.3f}{interval(key)}" for key, label in _METRIC_NAMES
             if isinstance(m.get(key), int | float)]
    if isinstance(m.get("n"), int):
        parts.append(f"n = {m['n']}")
    return ", ".join(parts)


def warning_rates_html(metrics: dict[str, Any]) -> str:
    """How often the malignancy warning fired on the models' own held-out images, per threshold.

    From the manifest's test split (else validation), when its training recorded it; "" otherwise.
    """
    esc = html.escape
    for split, label in (("test", translate("About", "test split")), ("val", translate("About", "validation split"))):
        m = metrics.get(split)
        rows = m.get("malignancy_warning") if isinstance(m, dict) else None
        if not isinstance(rows, list) or not rows:
            continue

        def pct(v: Any) -> str:
            return f"{v:.0%}" if isinstance(v, int | float) else "–"

        try:
            body = "".join(
                f"<tr><td>{r['threshold']:.0%}</td><td>{pct(r.get('melanoma'))}</td>"
                f"<td>{pct(r.get('malignant'))}</td><td>{pct(r.get('benign'))}</td></tr>" for r in rows)
        except (KeyError, TypeError, ValueError):
            return ""
        head = "".join(f"<th>{esc(h)}</th>" for h in (
            translate("About", "threshold"), translate("About", "melanomas"), translate("About", "all malignant"),
            translate("About", "benign (false alarms)")))
        return ("<p>" + translate("About", "<b>Malignancy warning</b> on the {split} (n = {n}): the share of each "
                                  "group it fired for, by threshold (a setting)").format(
                    split=esc(label), n=esc(str(m.get("n", "?"))))
                + f"</p><table cellspacing='0' cellpadding='2' border='1'><tr>{head}</tr>{body}</table>")
    return ""


def _training_data(manifest: dict[str, Any], members: list[dict[str, Any]]) -> str:
    sources = []
    for m in [manifest, *members]:
        t = m.get("training")
        if isinstance(t, dict) and t.get("data"):
            sources.append(str(t["data"]))
    return ", ".join(sorted(set(sources))) or translate("About", "not recorded in the manifest")


def models_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "") -> str:
    """HTML describing the active ensemble: name, members, metrics, training data, licence."""
    esc = html.escape
    if engine is None:
        where = translate("About", " from {folder}").format(folder=esc(str(models_dir))) if models_dir else ""
        return ("<p>" + translate("About", "<b>No models loaded</b>{where}.").format(where=where) + "</p>"
                + (f"<p>{esc(error)}</p>" if error else ""))
    ens = engine.ensemble
    man = ens.manifest
    member_manifests = [m.manifest for m in ens.members]

    def member(m: Any, w: float) -> str:
        pre = m.preprocess
        text = translate("About", "{architecture} — input {w}×{h} px (every photo first brought to {ew}×{eh} "
                         "px").format(
            architecture=esc(m.architecture), w=pre.input_size[1], h=pre.input_size[0], ew=pre.effective_size[1],
            eh=pre.effective_size[0])
        if pre.jpeg_quality is not None:
            text += translate("About", "; larger ones re-encoded as JPEG quality {q}, like the training images").format(
                q=pre.jpeg_quality)
        text += translate("About", "), weight {weight}, temperature {t}").format(weight=f"{w:.2f}",
                                                                               t=f"{m.temperature:.2f}")
        if isinstance(m.manifest.get("metrics"), dict) and m.manifest["metrics"].get("val"):
            text += "<br/><small>" + translate("About", "validation: {figures}").format(
                figures=esc(metrics_line(m.manifest.get("metrics", {}).get("val")))) + "</small>"
        return f"<li>{text}</li>"

    rows = "".join(member(m, w) for m, w in zip(ens.members, ens.weights, strict=True))
    metrics: dict[str, Any] = man["metrics"] if isinstance(man.get("metrics"), dict) else {}
    metric_rows = "".join(
        f"<li>{esc(split)}: {esc(metrics_line(metrics.get(split)))}</li>"
        for split in ("val", "test") if metrics_line(metrics.get(split))
    ) or "<li>" + translate("About", "none recorded") + "</li>"
    licence = (man.get("licence") or (member_manifests[0].get("licence") if member_manifests else "")
               or translate("About", "not stated"))
    return (
        "<p>" + translate("About", "<b>Active models:</b> {version}").format(version=esc(engine.version))
        + f"<br/><small>{esc(str(ens.path))}</small><br/>"
        + translate("About", "created {date}").format(date=esc(str(man.get("created", translate("About", "unknown")))))
        + "</p><p><b>" + translate("About", "Members") + f"</b></p><ul>{rows}</ul>"
        + "<p><b>" + translate("About", "Ensemble metrics") + f"</b></p><ul>{metric_rows}</ul>"
        + warning_rates_html(metrics)
        + "<p>" + translate("About", "<b>Training data:</b> {data}").format(
            data=esc(_training_data(man, member_manifests))) + "</p>"
        + "<p>" + translate("About", "<b>Licence:</b> {licence}").format(licence=esc(str(licence)))
        + (f"<br/><small>{esc(translate('About', MODELS_LICENCE_NOTE))}</small>" if "BY-NC" in str(licence) else "")
        + "</p>"
    )


def device_text(engine: EnsembleEngine | None) -> str:
    if engine is None:
        return translate("About", "no models loaded")
    name = engine.device
    if engine.device_type == "cuda":
        import torch

        name += f" ({torch.cuda.get_device_name(torch.device(engine.device))})"
    else:
        name = "CPU (ONNX Runtime)" if engine.backend == "onnxruntime" else "CPU"
    return name + (translate("About", " with test-time augmentation") if engine.tta else "")


def _figures_sentence(metrics: dict[str, Any], threshold: float) -> str:
    """How the models did on held-out images, in words: accuracy and how often the warning fired."""
    for split in ("test", "val"):
        m = metrics.get(split)
        if not isinstance(m, dict) or not isinstance(m.get("accuracy"), int | float):
            continue
        iv = (m.get("intervals") or {}).get("accuracy") if isinstance(m.get("intervals"), dict) else None
        ci = (translate("About", " (95% interval {low} to {high})").format(low=f"{iv[0]:.0%}", high=f"{iv[1]:.0%}")
              if isinstance(iv, list) and len(iv) == 2 else "")
        text = (translate("About", "On {n} images they had not been trained on, they put the right diagnosis first "
                          "for {accuracy}{interval}").format(n=m["n"], accuracy=f"{m['accuracy']:.0%}", interval=ci)
                if "n" in m else
                translate("About", "On the images they had not been trained on, they put the right diagnosis first "
                          "for {accuracy}{interval}").format(accuracy=f"{m['accuracy']:.0%}", interval=ci))
        rows = m.get("malignancy_warning")
        row = next((r for r in rows if isinstance(r, dict) and abs(float(r.get("threshold", -1)) - threshold) < 1e-6),
                   None) if isinstance(rows, list) else None
        if row and isinstance(row.get("melanoma"), int | float) and isinstance(row.get("benign"), int | float):
            text += translate("About", "; at your warning threshold ({threshold}) the malignancy warning fired for "
                              "{melanoma} of melanomas, and also for {benign} of benign lesions").format(
                threshold=f"{threshold:.0%}", melanoma=f"{row['melanoma']:.0%}", benign=f"{row['benign']:.0%}")
        return text + "."
    return translate("About", "No figures on held-out images are recorded for these models.")


def about_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "",
               threshold: float = 0.30, unvalidated: str = "") -> str:
    """The About box in plain language; `technical_html` holds the detail."""
    esc = html.escape
    if engine is None:
        where = translate("About", " from {folder}").format(folder=esc(str(models_dir))) if models_dir else ""
        models = ("<p>" + translate("About", "<b>No models are loaded</b>{where}, so no image can be analysed.").format(
            where=where) + (" " + esc(error) if error else "") + "</p>")
    else:
        man = engine.ensemble.manifest
        n = len(engine.ensemble.members)
        metrics = man["metrics"] if isinstance(man.get("metrics"), dict) else {}
        licence = (man.get("licence") or engine.ensemble.members[0].manifest.get("licence")
                   or translate("About", "not stated"))
        networks = (translate("About", "one network") if n == 1 else translate(
            "About", "two networks whose answers are averaged") if n == 2 else translate(
            "About", "{n} networks whose answers are averaged").format(n=n))
        models = (
            "<p>" + translate("About", "<b>Models in use:</b> {version}, {networks}.").format(
                version=esc(engine.version), networks=networks) + "</p>"
            + (f"<p style='color:#c62828'><b>{esc(unvalidated)}</b></p>" if unvalidated else "")
            + f"<p>{esc(_figures_sentence(metrics, threshold))}</p>"
            + "<p>" + translate("About", "The shipped models learned from the HAM10000 images (Vienna, Austria and "
                                "Queensland, Australia): mostly fair-skinned adults. Licence of the models: "
                                "{licence}").format(licence=esc(str(licence)))
            + (f" {esc(translate('About', MODELS_LICENCE_NOTE))}" if "BY-NC" in str(licence) else "") + "</p>")
    return (
        f"<h3>Lesion Desktop {esc_version()}</h3>"
        + "<p>" + translate("About", "Lesion Desktop gives a second look at a dermoscopy image of a skin lesion. It "
                            "estimates how likely seven common diagnoses are (melanoma, basal cell carcinoma, actinic "
                            "keratosis / intraepithelial carcinoma, naevus, benign keratosis, dermatofibroma and "
                            "vascular lesion), and warns when the malignant ones together are likely.") + "</p>"
        + f"<p style='color:#c62828'><b>{esc(disclaimer())}</b></p>"
        + models
        + "<p>" + translate("About", "<b>Runs on:</b> {device} ({edition}).").format(
            device=esc(device_text(engine)), edition=esc(edition_name())) + "</p>"
        + "<p>" + translate("About", "Images and results stay on this computer: the program makes no network "
                            "connection.") + "</p>"
        + "<p>" + translate("About", "How to use it, and what it cannot do: <b>Help &gt; Instructions for use</b> "
                            "(F1). The networks, their measured figures and their training: <b>Technical "
                            "details</b>.") + "</p>"
        + "<p><small>" + translate("About", "Software licence: MIT. Third-party software in this program and its "
                                   "licences: {where}").format(where=esc(licences_location())) + "</small></p>"
    )


def technical_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "") -> str:
    """The ML detail behind the About box: edition, device, members, figures with intervals, warning rates."""
    return (
        "<p>" + translate("About", "<b>Edition:</b> {edition}").format(edition=html.escape(edition_name())) + "<br/>"
        + translate("About", "<b>Device in use:</b> {device}").format(device=html.escape(device_text(engine)))
        + (f"<br/>{html.escape(engine.device_note)}" if engine is not None and engine.device_note else "")
        + "</p>"
        + models_html(engine, models_dir, error)
    )


def licences_location() -> str:
    """Where the licence texts are: the frozen program's licenses/ folder (build.spec), else the source's notices."""
    if getattr(sys, "frozen", False):
        return str(Path(sys.executable).resolve().parent / "licenses")
    notices = Path(__file__).resolve().parents[2] / "THIRD_PARTY_NOTICES.md"
    return str(notices) if notices.is_file() else translate("About", "THIRD_PARTY_NOTICES.md in the source "
                                                                       "distribution")


def esc_version() -> str:
    return html.escape(__version__)
