"""HTML parts describing one run: curves, confusion matrix, per-class table, examples, weights.

Each function takes a loaded ``RunData`` and returns an HTML fragment; a part whose data is
missing returns the note explaining why instead, so a page always has every heading.
"""

from __future__ import annotations

import numpy as np

from cnnlab.inspect.run_figures import CAPTIONS, inside_figures
from cnnlab.reports.artifacts import Note, RunData
from cnnlab.reports.fmt import fmt_float, fmt_int, fmt_pct, fmt_seconds, fmt_si, number
from cnnlab.reports.html_page import Cell, esc, figure, img_array, img_png, note, num, table
from cnnlab.viz.confusion import cell_colour, plot_confusion, row_fractions, top_confusions
from cnnlab.viz.curves import plot_curves
from cnnlab.viz.examples import example_caption, to_rgb
from cnnlab.viz.png import figure_to_png
from cnnlab.viz.weights import filter_mosaic, weight_map_images

#: Up to this many classes the confusion matrix is an HTML table (crisp, searchable text);
#: beyond, a heat-map picture.
CM_TABLE_MAX = 20


def _note(n: Note | None, fallback: str) -> str:
    return note(n.text, warn=n.warn) if n else note(fallback)


def curves_part(run: RunData) -> str:
    """Loss and accuracy against epoch (train, validation when present, test)."""
    if not run.history:
        return _note(run.notes.get("history"), "No training history recorded.")
    png = figure_to_png(plot_curves(run.history, width=6.8), dpi=90)
    splits = ["train"] + [s for s in ("val", "test") if f"{s}_acc" in run.history[0]]
    names = {"train": "training", "val": "validation", "test": "test"}
    caption = (
        f"Loss and accuracy per epoch ({len(run.history)} epoch"
        f"{'s' if len(run.history) != 1 else ''}) on the {', '.join(names[s] for s in splits)} "
        "data; training values are averages over each epoch's batches."
    )
    return figure(img_png(png, f"learning curves of {run.model}"), caption)


def confusion_part(run: RunData) -> str:
    """Counts of (true, predicted) test images; rows are the true classes."""
    cm = run.confusion
    if cm is None:
        return note("metrics.json holds no test confusion matrix.", warn=True)
    n = cm.shape[0]
    names = run.classes
    if n <= CM_TABLE_MAX:
        body = _confusion_table(cm, names)
    else:
        png = figure_to_png(plot_confusion(cm, names), dpi=80)
        body = img_png(png, f"confusion matrix of {run.model}")
    worst = top_confusions(cm, 5)
    pairs = "; ".join(f"{names[i]} → {names[j]}: {c}" for i, j, c in worst) or "none"
    caption = (
        f"Test-set confusion matrix ({fmt_int(cm.sum())} images): rows are the true classes, "
        "columns the predicted ones, shading is the share of the row. Most frequent confusions "
        f"(true → predicted: count): {pairs}."
    )
    return figure(body, caption)


def _confusion_table(cm: np.ndarray, names: list[str]) -> str:
    frac = row_fractions(cm)
    head = "".join(f'<th class="col" title="predicted {esc(c)}">{esc(c)}</th>' for c in names)
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            f = frac[i, j]
            ink = "#fff" if f > 0.55 else "#1d2430"
            title = f"true {name}, predicted {names[j]}: {cm[i, j]} ({100 * f:.1f}% of the row)"
            cells.append(
                f'<td style="background:{cell_colour(f)};color:{ink}" title="{esc(title)}">'
                f"{cm[i, j] if cm[i, j] else ''}</td>"
            )
        rows.append(f'<tr><th class="row">{esc(name)}</th>{"".join(cells)}</tr>')
    corner = '<th class="row">true ↓ / predicted →</th>'
    return (
        f'<div class="wide"><table class="cm"><thead><tr>{corner}{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def per_class_part(run: RunData) -> str:
    """Precision, recall, F1 and support per class (lowest F1 highlighted)."""
    test = run.metrics.get("test") or {}
    cm = run.confusion
    keys = ("precision", "recall", "f1")
    if cm is None or any(len(test.get(k) or []) != cm.shape[0] for k in keys):
        return note("metrics.json holds no per-class figures.", warn=True)
    f1 = [number(v) for v in test["f1"]]
    finite = [v for v in f1 if v is not None]
    worst = min(finite) if finite else None
    rows, marks = [], []
    for i, name in enumerate(run.classes):
        rows.append(
            [name, *(num(fmt_pct(test[k][i], digits=1)) for k in keys), num(fmt_int(cm[i].sum()))]
        )
        marks.append("low" if f1[i] is not None and f1[i] == worst and len(finite) > 1 else "")
    caption = (
        f"Balanced accuracy (mean recall over classes) {fmt_pct(test.get('balanced_acc'))}; "
        "the highlighted row is the class with the lowest F1."
    )
    head = ["class", num("precision"), num("recall"), num("F1"), num("test images")]
    return table(head, rows, row_classes=marks) + f"<p class='muted'>{esc(caption)}</p>"


def examples_part(run: RunData) -> str:
    """Correctly and wrongly classified test images with their labels and confidence."""
    ex = run.examples
    if ex is None:
        return _note(run.notes.get("examples"), "No example images were saved.")
    rgb = to_rgb(ex["images"])
    out = []
    for flag, title, empty in (
        (1, "Correctly classified", "No test image was classified correctly."),
        (0, "Misclassified", "Every test image was classified correctly."),
    ):
        idx = [i for i in range(len(rgb)) if int(ex["correct"][i]) == flag]
        out.append(f"<h4>{esc(title)} ({len(idx)} shown)</h4>")
        out.append(_tiles(run, rgb, idx, ok=bool(flag)) if idx else note(empty))
    out.append(
        "<p class='muted'>Up to 16 of each kind, spread over the true classes; captions give "
        "the true class, the prediction when it differs (→), and the model's confidence.</p>"
    )
    return "".join(out)


def _tiles(run: RunData, rgb: np.ndarray, idx: list[int], *, ok: bool) -> str:
    ex, names = run.examples or {}, run.classes
    tiles = []
    for i in idx:
        t, p = int(ex["targets"][i]), int(ex["preds"][i])
        true = names[t] if 0 <= t < len(names) else str(t)
        pred = names[p] if 0 <= p < len(names) else str(p)
        caption = example_caption(true, pred, float(ex["confidence"][i]))
        img = img_array(rgb[i], f"test image: {caption}", target=80)
        tiles.append(
            f'<figure class="tile {"ok" if ok else "bad"}">{img}'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    return f'<div class="grid">{"".join(tiles)}</div>'


def weights_part(run: RunData) -> str:
    """Class templates (softmax regression) or first-layer filters (CNNs)."""
    w = run.weights
    if w is None:
        fallback = "This model has neither a convolution on the pixels nor a pixel classifier."
        return _note(run.notes.get("weights") or run.notes.get("checkpoint"), fallback)
    if w.kind == "templates":
        return _templates(run)
    mosaic = filter_mosaic(w.weight)
    o, i, kh, kw = w.weight.shape
    colour = "in colour (RGB input)" if i == 3 else "in grey"
    caption = (
        f"First convolution ({w.layer}): {o} filters of {i}×{kh}×{kw}, each scaled to its own "
        f"minimum–maximum and shown {colour}; the gaps are light blue."
    )
    return figure(img_array(mosaic, f"first-layer filters of {run.model}", target=320), caption)


def _templates(run: RunData) -> str:
    from matplotlib import colormaps

    w = run.weights
    assert w is not None
    images, vmax = weight_map_images(w.weight, w.image_shape)
    names = run.classes if len(run.classes) == len(images) else [str(i) for i in range(len(images))]
    tiles = "".join(
        f'<figure class="tile big">{img_array(im, f"weights of class {c}", target=112)}'
        f"<figcaption>{esc(c)}</figcaption></figure>"
        for im, c in zip(images, names, strict=True)
    )
    if w.image_shape[0] == 3:
        legend = esc("In colour: mid-grey is 0, a bright channel a positive weight.")
    else:
        stops = ", ".join(
            "#{:02x}{:02x}{:02x}".format(*(round(255 * v) for v in colormaps["RdBu_r"](t)[:3]))
            for t in np.linspace(0, 1, 9)
        )
        legend = (
            f'<span>{esc(f"{-vmax:.3g}")}</span> <span class="legend" style="background:'
            f'linear-gradient(to right, {stops})"></span> <span>{esc(f"+{vmax:.3g}")}</span>'
            " — red pixels raise the class score, blue ones lower it, white is 0 (one scale "
            "for all classes; the 1% largest weights saturate)."
        )
    return (
        f'<div class="grid">{tiles}</div><p class="muted">Weights of the linear layer '
        f"({esc(w.layer)}), one row per class reshaped to the image. {legend}</p>"
    )


def headline_rows(run: RunData) -> list[list[Cell | str]]:
    """Key/value rows of a run's headline numbers."""
    m = run.metrics
    rows: list[tuple[str, str, object]] = [
        ("test accuracy", fmt_pct(m.get("test_acc")), m.get("test_acc")),
        ("test loss", fmt_float(m.get("test_loss")), m.get("test_loss")),
        ("balanced accuracy", fmt_pct((m.get("test") or {}).get("balanced_acc")), None),
    ]
    if "val_acc" in m:
        rows.append(("validation accuracy", fmt_pct(m.get("val_acc")), m.get("val_acc")))
    rows += [
        ("final training accuracy", fmt_pct(m.get("train_acc")), m.get("train_acc")),
        ("parameters", fmt_si(m.get("params")), fmt_int(m.get("params"))),
        ("multiply-adds per image", fmt_si(m.get("macs")), fmt_int(m.get("macs"))),
        ("epochs", fmt_int(m.get("epochs")), None),
        ("training time", fmt_seconds(m.get("train_seconds")), m.get("train_seconds")),
        ("time per epoch", fmt_seconds(m.get("seconds_per_epoch")), m.get("seconds_per_epoch")),
        ("training speed (img/s)", fmt_si(m.get("train_images_per_s")), None),
        ("inference speed (img/s)", fmt_si(m.get("infer_images_per_s")), None),
        ("precision / device", f"{m.get('precision', '?')} / {m.get('device', '?')}", None),
        ("seed", fmt_int(m.get("seed")), None),
    ]
    if m.get("stopped_early"):
        rows.append(("stopped early", str(m["stopped_early"]), None))
    return [[k, num(v, "" if exact is None else exact)] for k, v, exact in rows]


def inside_part(run: RunData) -> str | None:
    """The "inside the network" figures of a CNN (filters, feature maps, Grad-CAM, sparsity;
    handbook §3.1), or None for a model without convolutions. Needs the run's data set."""
    try:
        figs = inside_figures(run.path)
    except Exception as err:  # data set moved, checkpoint unreadable: say so, keep the page
        return note(f"Inside-the-network figures could not be made: {err}", warn=True)
    if not figs:
        return None
    return "".join(
        figure(img_png(png, f"{key} of {run.model}"), CAPTIONS.get(key, ""))
        for key, png in figs.items()
    )
