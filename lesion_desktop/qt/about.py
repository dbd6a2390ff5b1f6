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

from lesion_desktop import __version__
from lesion_desktop.edition import name as edition_name

if TYPE_CHECKING:  # the lite edition has no PyTorch
    from lesion_desktop.inference import Engine as EnsembleEngine

DISCLAIMER = "Decision support only — not a diagnosis. A clinician must make the diagnosis."
MODELS_LICENCE_NOTE = (
    "Non-commercial terms: research, teaching, audits and evaluating the program are within them; using these models "
    "in fee-paying patient care, or in a product or service that is sold, may count as commercial use. Before such "
    "use, ask your legal adviser, or use models your clinic trained on images it has the rights to use (Retrain). "
    "Not legal advice.")
_METRIC_NAMES = (("balanced_accuracy", "balanced accuracy"), ("melanoma_recall", "melanoma recall"),
                 ("accuracy", "accuracy"), ("macro_auc", "macro AUC"))


def metrics_line(m: Any) -> str:
    if not isinstance(m, dict):
        return ""
    ci = m.get("intervals") if isinstance(m.get("intervals"), dict) else {}

    def interval(key: str) -> str:
        iv = ci.get(key)
        if isinstance(iv, list) and len(iv) == 2 and all(isinstance(x, int | float) for x in iv):
            return f" (95% interval {iv[0]:.3f}–{iv[1]:.3f})"
        return ""

    parts = [f"{label} {m[key]:.3f}{interval(key)}" for key, label in _METRIC_NAMES
             if isinstance(m.get(key), int | float)]
    if isinstance(m.get("n"), int):
        parts.append(f"n = {m['n']}")
    return ", ".join(parts)


def warning_rates_html(metrics: dict[str, Any]) -> str:
    """How often the malignancy warning fired on the models' own held-out images, per threshold.

    From the manifest's test split (else validation), when its training recorded it; "" otherwise.
    """
    esc = html.escape
    for split, label in (("test", "test split"), ("val", "validation split")):
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
        return (f"<p><b>Malignancy warning</b> on the {esc(label)} (n = {esc(str(m.get('n', '?')))}): the share "
                f"of each group it fired for, by threshold (a setting)</p>"
                f"<table cellspacing='0' cellpadding='2' border='1'><tr><th>threshold</th><th>melanomas</th>"
                f"<th>all malignant</th><th>benign (false alarms)</th></tr>{body}</table>")
    return ""


def _training_data(manifest: dict[str, Any], members: list[dict[str, Any]]) -> str:
    sources = []
    for m in [manifest, *members]:
        t = m.get("training")
        if isinstance(t, dict) and t.get("data"):
            sources.append(str(t["data"]))
    return ", ".join(sorted(set(sources))) or "not recorded in the manifest"


def models_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "") -> str:
    """HTML describing the active ensemble: name, members, metrics, training data, licence."""
    esc = html.escape
    if engine is None:
        where = f" from {esc(str(models_dir))}" if models_dir else ""
        return f"<p><b>No models loaded</b>{where}.</p>" + (f"<p>{esc(error)}</p>" if error else "")
    ens = engine.ensemble
    man = ens.manifest
    member_manifests = [m.manifest for m in ens.members]
    rows = "".join(
        f"<li>{esc(m.architecture)} — input {m.preprocess.input_size[1]}×{m.preprocess.input_size[0]} px "
        f"(every photo first brought to {m.preprocess.effective_size[1]}×{m.preprocess.effective_size[0]} px"
        + (f"; larger ones re-encoded as JPEG quality {m.preprocess.jpeg_quality}, like the training images"
           if m.preprocess.jpeg_quality is not None else "")
        + f"), weight {w:.2f}, temperature {m.temperature:.2f}"
        + (f"<br/><small>validation: {esc(metrics_line(m.manifest.get('metrics', {}).get('val')))}</small>"
           if isinstance(m.manifest.get("metrics"), dict) and m.manifest["metrics"].get("val") else "")
        + "</li>"
        for m, w in zip(ens.members, ens.weights, strict=True)
    )
    metrics: dict[str, Any] = man["metrics"] if isinstance(man.get("metrics"), dict) else {}
    metric_rows = "".join(
        f"<li>{esc(split)}: {esc(metrics_line(metrics.get(split)))}</li>"
        for split in ("val", "test") if metrics_line(metrics.get(split))
    ) or "<li>none recorded</li>"
    licence = man.get("licence") or (member_manifests[0].get("licence") if member_manifests else "") or "not stated"
    return (
        f"<p><b>Active models:</b> {esc(engine.version)}<br/>"
        f"<small>{esc(str(ens.path))}</small><br/>"
        f"created {esc(str(man.get('created', 'unknown')))}</p>"
        f"<p><b>Members</b></p><ul>{rows}</ul>"
        f"<p><b>Ensemble metrics</b></p><ul>{metric_rows}</ul>"
        + warning_rates_html(metrics) +
        f"<p><b>Training data:</b> {esc(_training_data(man, member_manifests))}</p>"
        f"<p><b>Licence:</b> {esc(str(licence))}"
        + (f"<br/><small>{esc(MODELS_LICENCE_NOTE)}</small>" if "BY-NC" in str(licence) else "") + "</p>"
    )


def device_text(engine: EnsembleEngine | None) -> str:
    if engine is None:
        return "no models loaded"
    name = engine.device
    if engine.device_type == "cuda":
        import torch

        name += f" ({torch.cuda.get_device_name(torch.device(engine.device))})"
    else:
        name = "CPU (ONNX Runtime)" if engine.backend == "onnxruntime" else "CPU"
    return name + (" with test-time augmentation" if engine.tta else "")


def _figures_sentence(metrics: dict[str, Any], threshold: float) -> str:
    """How the models did on held-out images, in words: accuracy and how often the warning fired."""
    for split in ("test", "val"):
        m = metrics.get(split)
        if not isinstance(m, dict) or not isinstance(m.get("accuracy"), int | float):
            continue
        iv = (m.get("intervals") or {}).get("accuracy") if isinstance(m.get("intervals"), dict) else None
        ci = (f" (95% interval {iv[0]:.0%} to {iv[1]:.0%})" if isinstance(iv, list) and len(iv) == 2 else "")
        text = (f"On {m.get('n', 'the')} images they had not been trained on, they put the right diagnosis first "
                f"for {m['accuracy']:.0%}{ci}")
        rows = m.get("malignancy_warning")
        row = next((r for r in rows if isinstance(r, dict) and abs(float(r.get("threshold", -1)) - threshold) < 1e-6),
                   None) if isinstance(rows, list) else None
        if row and isinstance(row.get("melanoma"), int | float) and isinstance(row.get("benign"), int | float):
            text += (f"; at your warning threshold ({threshold:.0%}) the malignancy warning fired for "
                     f"{row['melanoma']:.0%} of melanomas, and also for {row['benign']:.0%} of benign lesions")
        return text + "."
    return "No figures on held-out images are recorded for these models."


def about_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "",
               threshold: float = 0.30, unvalidated: str = "") -> str:
    """The About box in plain language; `technical_html` holds the detail."""
    esc = html.escape
    if engine is None:
        models = (f"<p><b>No models are loaded</b>{' from ' + esc(str(models_dir)) if models_dir else ''}, so no "
                  f"image can be analysed.{' ' + esc(error) if error else ''}</p>")
    else:
        man = engine.ensemble.manifest
        n = len(engine.ensemble.members)
        metrics = man["metrics"] if isinstance(man.get("metrics"), dict) else {}
        licence = man.get("licence") or engine.ensemble.members[0].manifest.get("licence") or "not stated"
        models = (
            f"<p><b>Models in use:</b> {esc(engine.version)}, "
            f"{'one network' if n == 1 else ('two networks' if n == 2 else f'{n} networks')}"
            f"{'' if n == 1 else ' whose answers are averaged'}.</p>"
            + (f"<p style='color:#c62828'><b>{esc(unvalidated)}</b></p>" if unvalidated else "")
            + f"<p>{esc(_figures_sentence(metrics, threshold))}</p>"
            f"<p>The shipped models learned from the HAM10000 images (Vienna, Austria and Queensland, Australia): "
            f"mostly fair-skinned adults. Licence of the models: {esc(str(licence))}"
            + (f" {esc(MODELS_LICENCE_NOTE)}" if "BY-NC" in str(licence) else "") + "</p>")
    return (
        f"<h3>Lesion Desktop {esc_version()}</h3>"
        "<p>Lesion Desktop gives a second look at a dermoscopy image of a skin lesion. It estimates how likely "
        "seven common diagnoses are (melanoma, basal cell carcinoma, actinic keratosis / intraepithelial "
        "carcinoma, naevus, benign keratosis, dermatofibroma and vascular lesion), and warns when the malignant "
        "ones together are likely.</p>"
        f"<p style='color:#c62828'><b>{esc(DISCLAIMER)}</b></p>"
        + models
        + f"<p><b>Runs on:</b> {esc(device_text(engine))} ({esc(edition_name())}).</p>"
        "<p>Images and results stay on this computer: the program makes no network connection.</p>"
        "<p>How to use it, and what it cannot do: <b>Help &gt; Instructions for use</b> (F1). The networks, "
        "their measured figures and their training: <b>Technical details</b>.</p>"
        f"<p><small>Software licence: MIT. Third-party software in this program and its licences: "
        f"{esc(licences_location())}</small></p>"
    )


def technical_html(engine: EnsembleEngine | None, models_dir: Path | None = None, error: str = "") -> str:
    """The ML detail behind the About box: edition, device, members, figures with intervals, warning rates."""
    return (
        f"<p><b>Edition:</b> {html.escape(edition_name())}<br/>"
        f"<b>Device in use:</b> {html.escape(device_text(engine))}"
        + (f"<br/>{html.escape(engine.device_note)}" if engine is not None and engine.device_note else "")
        + "</p>"
        + models_html(engine, models_dir, error)
    )


def licences_location() -> str:
    """Where the licence texts are: the frozen program's licenses/ folder (build.spec), else the source's notices."""
    if getattr(sys, "frozen", False):
        return str(Path(sys.executable).resolve().parent / "licenses")
    notices = Path(__file__).resolve().parents[2] / "THIRD_PARTY_NOTICES.md"
    return str(notices) if notices.is_file() else "THIRD_PARTY_NOTICES.md in the source distribution"


def esc_version() -> str:
    return html.escape(__version__)
