"""The instructions for use, in Markdown: shown by Help > Instructions for use (F1) and kept in docs/.

One text for both places: `docs/instructions-for-use.md` is this text, and a test keeps the two equal.
The figures quoted are the shipped default models' on their held-out test split (their manifest and
docs/model-card.md); the About box gives the figures of whichever models are in use.
"""

from __future__ import annotations

from PySide6.QtCore import QT_TRANSLATE_NOOP

# Marked for translators as one text (context "Instructions"); InstructionsDialog shows the translation.
INSTRUCTIONS_TITLE = QT_TRANSLATE_NOOP("Instructions", "Lesion Desktop: instructions for use")

INSTRUCTIONS = QT_TRANSLATE_NOOP("Instructions", """# Lesion Desktop: instructions for use

**Decision support only, not a diagnosis. A clinician makes the diagnosis.** Lesion Desktop gives a second
look at a dermoscopy image. It never replaces examining the patient, the history, comparison over time, or
a biopsy when one is indicated. A reassuring result must never stop you from excising or referring a lesion
that worries you.

## What it is for

- Adults' pigmented and non-pigmented skin lesions photographed **through a dermatoscope** (contact or
  polarised dermoscopy), one lesion per image, centred and in focus.
- Estimating how likely each of seven diagnoses is, and warning when the malignant ones together are likely.
- Keeping a local history of the images you analysed, and a PDF report for the patient's record.

## What it is not for

- **Clinical (non-dermoscopic) photographs**, photos taken with a phone without a dermatoscope, histology
  slides, screenshots or anything else that is not a dermoscopy image of one skin lesion.
- Deciding on its own whether a lesion can be left alone, or screening patients without a clinician.
- Lesions outside the seven classes below. The models have never seen, among others: **squamous cell
  carcinoma** (invasive), keratoacanthoma, **Spitz and Reed naevi**, atypical (dysplastic) naevi as a class of
  their own, Merkel cell carcinoma, cutaneous metastases, inflammatory and infectious skin disease, and
  lesions on **acral skin** (palms and soles), **nails** and **mucosa** (lips, genital mucosa, conjunctiva).
  Such a lesion is still given one of the seven labels, with a probability that can look confident.
- Children: the training images come almost entirely from adults.

## The seven classes

| Code | Diagnosis | Counts as malignant for the warning |
|---|---|---|
| mel | Melanoma | yes |
| bcc | Basal cell carcinoma | yes |
| akiec | Actinic keratosis / intraepithelial carcinoma (Bowen's disease) | yes |
| nv | Melanocytic naevus | no |
| bkl | Benign keratosis-like lesion (solar lentigo, seborrhoeic keratosis, lichen-planus-like keratosis) | no |
| df | Dermatofibroma | no |
| vasc | Vascular lesion (angioma, angiokeratoma, pyogenic granuloma, haemorrhage) | no |

## Who the models learned from

The shipped models were trained on the HAM10000 data set: about 10,000 dermoscopy images collected at the
Department of Dermatology of the Medical University of Vienna (Austria) and a skin cancer practice in
Queensland (Australia). The patients were **mostly fair-skinned**; dark skin types are barely represented,
and the models have not been shown to work for them. Two thirds of the images are naevi. Diagnoses were
confirmed by histopathology for about half of the images, the rest by follow-up, expert consensus or confocal
microscopy. The data set's licence (CC BY-NC 4.0) allows non-commercial use only, and the models inherit it.

## Taking a good image

- Clean the dermatoscope's glass, use immersion fluid or polarised light as usual, and avoid bubbles.
- Fill most of the image with the lesion and a rim of normal skin; keep it in focus and evenly lit.
- Keep the colours true: use the dermatoscope's own light and a fixed white balance for the camera, not
  automatic white balance or a filter. A colour cast over the whole image (too red, too blue, too yellow)
  makes the models miss melanomas more often: with simulated casts on held-out images, the warning fired for
  82% of melanomas instead of 96%.
- Open a file (Ctrl+O), drop or paste an image (Ctrl+V), or start the camera (Ctrl+L) and capture (Space).

## Reading the result

- **Probabilities.** Each of the seven classes gets a probability; they add up to 100%. They are calibrated
  on held-out images: of the lesions given about 70%, about 70 in 100 had that diagnosis. The top label
  is only the most likely of the seven, not a diagnosis, and a probability of 40% means the models are
  unsure.
- **The malignancy warning.** When melanoma, basal cell carcinoma and actinic keratosis / intraepithelial
  carcinoma together reach the warning threshold (30% by default, in Settings), the result shows a red
  warning, whatever the top label is. On the shipped models' test images, at 30% the warning fired for 87% of
  melanomas and 92% of all malignant lesions, and also for 34% of benign lesions: **about one melanoma in
  eight did not trigger it**. A lower threshold warns more often, for melanomas and benign lesions alike.
  No warning does not mean benign.
- **How sure the models are.** The two models give their answers separately; the result says whether they
  agree and how far their probabilities differ. When they disagree, or the probabilities are spread over
  several classes, treat the result as uncertain.
- **Intervals.** Figures about the models (in the About box and the model card) come with a 95% interval:
  the range in which the figure would probably fall on another sample of the same size. On the shipped
  models' test images, balanced accuracy (the average of the seven classes' recall) was 0.72 (95% interval
  0.66 to 0.78) and melanoma recall (melanomas named as melanoma) 0.67 (0.58 to 0.76). They are averages over
  many images: they do not tell how likely one result is to be right.
- **Heat-map.** The coloured overlay shows which parts of the image weighed most for the class shown. It
  helps to check that the models looked at the lesion rather than at a ruler, hair or the dermatoscope's rim;
  it is not a map of where the lesion is malignant.

## When the image is out of scope or poor

- **Out of scope.** When the image does not look like the dermoscopy images the models were trained on
  (a clinical photo, a different kind of picture, an unusual device), the program says so and shows no
  diagnosis. Take a dermoscopy image of the lesion instead. "Show anyway" displays the probabilities, and
  the record and the report are marked as out of scope: do not rely on them.
- **Poor quality.** When an image is too dark, blurred, overexposed or too small, the result says that it
  **cannot rule out malignancy** and asks for a new image. A low malignant probability on a poor image is not
  reassuring. Retake the image: clean the glass, focus, adjust the light, move closer.
- In either case, decide as you would without the program: examine, compare, excise or refer.

## Unvalidated models

A clinic can retrain the models on its own images (Tools > Retrain models). New models that were not shown
to be at least as good as the ones they replace can only be installed by an explicit override. While such
models are in use, a red banner in the main window says so, and every result and report names the models as
UNVALIDATED. Roll back (Tools > Retrain models, or Settings) to return to the previous models.

## Privacy

Images, results and the history stay on this computer. The program makes no network connection.

## More

- Help > About Lesion Desktop: the version, the models in use and their figures (technical details one click
  away).
- docs/model-card.md, shipped with the source: the models' data, figures by age, sex and body site, and known
  failure modes.
""")
