"""Figures of a report: per-class rates and their changes, attribute gaps, t-SNE of features.

Every figure function takes the JSON-ready report dict of one model (``Comparison.to_dict()``,
optionally with ``model``) and returns PNG bytes. Figures are drawn on a bare
:class:`matplotlib.figure.Figure` with the Agg canvas: headless, and without touching pyplot's
global backend or figure list, so a notebook or the gate that calls them keeps its own state.

Float and int8 differ by colour (Okabe-Ito, safe for colour-blind readers) *and* by hatch or
marker, so a figure printed in black and white still reads. PNG metadata carries no version
string, so the same report gives the same bytes.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qbias_check._optional import require

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies. Black is last so class colours are used before it (flip rings are black).
OKABE_ITO = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#000000",  # black
)
# Dark solid against light hatched: apart in greyscale as well as in colour.
FLOAT_STYLE = {"color": "#0072B2", "hatch": "", "marker": "o", "label": "float"}
INT8_STYLE = {"color": "#E69F00", "hatch": "///", "marker": "^", "label": "int8"}
CHANGE_STYLES = {
    "fnr": {"color": "#D55E00", "hatch": "\\\\\\"},
    "fpr": {"color": "#56B4E9", "hatch": "..."},
    "accuracy": {"color": "#009E73", "hatch": "xx"},
}
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
RATE_LABELS = {"fnr": "FNR", "fpr": "balanced FPR", "accuracy": "accuracy"}
DPI = 110
TSNE_MAX_POINTS = 1000

ERR_RATE = "rate must be 'fnr' or 'fpr'; got {rate!r}"
ERR_ATTRIBUTE = "no attribute {attribute!r} in the report; known: {known}"
ERR_FEATURES = (
    "features_float {a} and features_int8 {b} must be 2-D arrays with the same number of rows"
)
ERR_LENGTH = "{name} has {got} entries; the features have {n} rows"
ERR_TOO_FEW = "t-SNE needs at least 5 examples; got {n}"
ERR_NO_HEAD = (
    "{path}: no op with weights (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, ...) found; "
    "cannot tell which tensor is the penultimate layer"
)
ERR_NO_KERNEL_LAYER = "the Keras model has no layer with a kernel (Dense or Conv) to take input of"
# LiteRT ops that carry a weight tensor: the counterparts of Keras layers with a kernel.
WEIGHTED_OPS = frozenset(
    {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "TRANSPOSE_CONV"}
)
ERR_MODEL_KIND = (
    "{path}: penultimate features need a .tflite, .keras or .h5 file or a Keras model object"
)

Record = Mapping[str, Any]


def _value(v: Any) -> float:
    """A report number as float; ``None`` (NaN in JSON) becomes NaN so it is simply not drawn."""
    return math.nan if v is None else float(v)


def _column(records: Sequence[Record], key: str) -> NDArray[np.float64]:
    return np.array([_value(r.get(key)) for r in records], dtype=np.float64)


def _has(records: Sequence[Record], *keys: str) -> bool:
    """True when every record carries every key (optional interval columns)."""
    return bool(records) and all(k in r for r in records for k in keys)


def _yerr(
    estimate: NDArray[np.float64], low: NDArray[np.float64], high: NDArray[np.float64]
) -> NDArray[np.float64]:
    # matplotlib wants distances below and above; NaN bounds draw no bar.
    return np.vstack([estimate - low, high - estimate]).clip(min=0)


def _figure(width: float, height: float) -> Any:
    require("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _title(data: Mapping[str, Any], what: str) -> str:
    model = data.get("model")
    return f"{model}: {what}" if model else what


def _pct(data: Mapping[str, Any]) -> int:
    return round(float(data.get("confidence", 0.95)) * 100)


def _class_ticks(ax: Any, records: Sequence[Record]) -> None:
    labels = [f"{r['class']}\nn={r['support']}" if "support" in r else r["class"] for r in records]
    ax.set_xticks(np.arange(len(records)), labels, rotation=0 if len(records) <= 6 else 30)


def _paired_bars(
    ax: Any,
    before: NDArray[np.float64],
    after: NDArray[np.float64],
    errors: tuple[NDArray[np.float64] | None, NDArray[np.float64] | None] = (None, None),
) -> None:
    """Float and int8 bars side by side, with error bars where intervals are known."""
    x = np.arange(len(before))
    width = 0.38
    for offset, values, style, err in (
        (-width / 2, before, FLOAT_STYLE, errors[0]),
        (width / 2, after, INT8_STYLE, errors[1]),
    ):
        ax.bar(
            x + offset,
            np.nan_to_num(values),
            width,
            color=style["color"],
            hatch=style["hatch"],
            edgecolor="black",
            linewidth=0.8,
            label=style["label"],
            yerr=err,
            capsize=3,
            error_kw={"elinewidth": 1.0, "ecolor": "black"},
        )
    for i in np.flatnonzero(np.isnan(before) | np.isnan(after)):
        ax.annotate("n/a", (x[i], 0), ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)


def per_class_rates(data: Mapping[str, Any], rate: Literal["fnr", "fpr"] = "fnr") -> bytes:
    """Float and int8 FNR or balanced FPR per class as paired bars (thesis figures 4.1-4.2).

    Error bars are drawn when the per-class records carry ``{rate}_float_low/high`` and
    ``{rate}_int8_low/high``; the intervals of the changes are in :func:`per_class_changes`.
    """
    if rate not in ("fnr", "fpr"):
        raise ValueError(ERR_RATE.format(rate=rate))
    records = data["per_class"]
    before, after, errors = _levels(records, rate)
    fig = _figure(max(6.0, 1.1 * len(records) + 2.5), 4.2)
    ax = fig.add_subplot()
    _paired_bars(ax, before, after, errors)
    _class_ticks(ax, records)
    label = RATE_LABELS[rate]
    ax.set_ylabel(label)
    top = np.nanmax(np.concatenate([before, after, [0.0]]))
    ax.set_ylim(0, min(1.05, max(0.05, top * 1.25)))
    note = f" with {_pct(data)} % intervals" if errors[0] is not None else ""
    ax.set_title(_title(data, f"{label} per class, float vs int8{note} (n = {data['n']})"))
    ax.legend(loc="upper left", frameon=False)
    return _png(fig)


def per_class_changes(data: Mapping[str, Any]) -> bytes:
    """FNR and balanced-FPR increase (int8 - float) per class with their paired-bootstrap
    intervals (thesis figures 4.3-4.4, 4.10-4.11); ``*`` marks an interval that excludes 0."""
    records = data["per_class"]
    fig = _figure(max(9.0, 2.0 * len(records) + 3.0), 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(records))
    for ax, rate in zip(axes, ("fnr", "fpr"), strict=True):
        est = _column(records, f"{rate}_increase")
        low = _column(records, f"{rate}_increase_low")
        high = _column(records, f"{rate}_increase_high")
        style = CHANGE_STYLES[rate]
        ax.bar(
            x,
            np.nan_to_num(est),
            0.6,
            color=style["color"],
            hatch=style["hatch"],
            edgecolor="black",
            linewidth=0.8,
            yerr=_yerr(est, low, high),
            capsize=4,
            error_kw={"elinewidth": 1.0, "ecolor": "black"},
        )
        for i in np.flatnonzero((low > 0) | (high < 0)):
            above = est[i] >= 0
            ax.annotate(
                "*",
                (x[i], high[i] if above else low[i]),
                xytext=(0, 2 if above else -12),
                textcoords="offset points",
                ha="center",
                fontsize=13,
                fontweight="bold",
            )
        for i in np.flatnonzero(np.isnan(est)):
            ax.annotate("n/a", (x[i], 0), ha="center", va="bottom", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.grid(axis="y", color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)
        _class_ticks(ax, records)
        ax.set_title(f"{RATE_LABELS[rate]} increase (int8 - float)")
    axes[0].set_ylabel(f"change, with {_pct(data)} % interval")
    fig.suptitle(
        _title(data, f"per-class change after int8 (* interval excludes 0; n = {data['n']})")
    )
    return _png(fig)


def attribute_gaps(data: Mapping[str, Any], attribute: str) -> bytes:
    """Group differences per class for one protected attribute, before and after int8.

    Two-group attributes show the signed difference (second group minus first, thesis figures
    4.12-4.17); others show the gap (max minus min over groups). The lower row shows the gap
    increase with its interval, and for two groups the change in the signed difference
    (with an interval when the records carry ``difference_change_low/high``). Optional
    ``{difference|gap}_{float|int8}_low/high`` columns add error bars to the upper row.
    """
    groups = data.get("groups", {})
    rows = [g for g in data["gaps"] if g["attribute"] == attribute]
    if attribute not in groups or not rows:
        raise ValueError(ERR_ATTRIBUTE.format(attribute=attribute, known=sorted(groups)))
    names = list(groups[attribute])
    signed = len(names) == 2
    metrics = ("fnr", "fpr", "accuracy")
    n_classes = sum(1 for g in rows if g["metric"] == "fnr")
    fig = _figure(max(9.0, 1.6 * n_classes + 5.0), 7.0)
    axes = fig.subplots(2, 3, gridspec_kw={"width_ratios": [n_classes, n_classes, 2.0]})
    stem = "difference" if signed else "gap"
    what = f"{names[1]} - {names[0]}" if signed else "max - min over groups"
    for col, metric in enumerate(metrics):
        part = [g for g in rows if g["metric"] == metric]
        labels = ["all classes" if g["class"] == "*" else g["class"] for g in part]
        x = np.arange(len(part))
        top, bottom = axes[0, col], axes[1, col]
        _paired_bars(top, *_levels(part, stem))
        short = metric == "accuracy"  # the narrow panel: short titles that fit
        top.set_title(f"{RATE_LABELS[metric]}" if short else f"{RATE_LABELS[metric]}: {stem}")
        _change_panel(bottom, part, signed)
        bottom.set_title("change" if short else f"{RATE_LABELS[metric]}: change after int8")
        for ax in (top, bottom):
            ax.set_xticks(x, labels)
            ax.set_xlim(-0.6, len(part) - 0.4)
    axes[0, 0].set_ylabel(f"{what}")
    axes[1, 0].set_ylabel(f"int8 - float, {_pct(data)} % interval")
    axes[0, 0].legend(loc="best", frameon=False, fontsize=8)
    axes[1, 0].legend(loc="best", frameon=False, fontsize=8)
    fig.suptitle(_title(data, f"{attribute} ({', '.join(names)}): {stem} per class"))
    return _png(fig)


def _levels(
    part: Sequence[Record], stem: str
) -> tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    tuple[NDArray[np.float64] | None, NDArray[np.float64] | None],
]:
    """Float and int8 values of ``stem``, with error bars where ``{stem}_{part}_low/high`` exist."""
    values = [_column(part, f"{stem}_{p}") for p in ("float", "int8")]
    errors: list[NDArray[np.float64] | None] = []
    for p, v in zip(("float", "int8"), values, strict=True):
        keys = (f"{stem}_{p}_low", f"{stem}_{p}_high")
        has = _has(part, *keys)
        errors.append(_yerr(v, _column(part, keys[0]), _column(part, keys[1])) if has else None)
    return values[0], values[1], (errors[0], errors[1])


def _change_panel(ax: Any, part: Sequence[Record], signed: bool) -> None:
    """Gap increase bars with intervals; for two groups, the signed change as diamonds."""
    x = np.arange(len(part))
    est = _column(part, "gap_increase")
    width = 0.38 if signed else 0.6
    ax.bar(
        x - (width / 2 if signed else 0),
        np.nan_to_num(est),
        width,
        color="#CC79A7",
        hatch="//",
        edgecolor="black",
        linewidth=0.8,
        yerr=_yerr(est, _column(part, "low"), _column(part, "high")),
        capsize=3,
        error_kw={"elinewidth": 1.0, "ecolor": "black"},
        label="gap increase",
    )
    if signed:
        change = _column(part, "difference_change")
        keys = ("difference_change_low", "difference_change_high")
        err = (
            _yerr(change, _column(part, keys[0]), _column(part, keys[1]))
            if _has(part, *keys)
            else None
        )
        ax.errorbar(
            x + width / 2,
            change,
            yerr=err,
            fmt="D",
            color="black",
            markerfacecolor="white",
            markersize=7,
            capsize=3,
            linestyle="none",
            label="change of difference" + ("" if err is not None else " (no interval)"),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)


def standard_figures(data: Mapping[str, Any]) -> dict[str, bytes]:
    """The figures of a report: per-class FNR/FPR, their changes, and gaps per attribute."""
    figures = {
        "fnr_per_class": per_class_rates(data, "fnr"),
        "fpr_per_class": per_class_rates(data, "fpr"),
        "changes_per_class": per_class_changes(data),
    }
    attributes = {g["attribute"] for g in data.get("gaps", [])}
    for attribute in data.get("groups", {}):
        if attribute in attributes:
            figures[f"gaps_{attribute}"] = attribute_gaps(data, attribute)
    return figures


def tsne(
    features_float: ArrayLike,
    features_int8: ArrayLike,
    y: ArrayLike,
    flipped: ArrayLike,
    classes: Sequence[str],
    *,
    seed: int = 0,
    max_points: int = TSNE_MAX_POINTS,
    title: str = "",
) -> bytes:
    """t-SNE of penultimate-layer features, float beside int8, coloured by true class, with the
    examples whose prediction int8 flipped ringed (thesis 3.4.6, figures 4.5-4.7).

    ``y`` holds class indices into ``classes``. At most ``max_points`` examples (a fixed random
    subset, by ``seed``) are embedded; each model gets its own embedding, as in the thesis.
    """
    a = np.asarray(features_float, dtype=np.float64)
    b = np.asarray(features_int8, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(ERR_FEATURES.format(a=a.shape, b=b.shape))
    labels = np.asarray(y).reshape(-1).astype(np.int64)
    flips = np.asarray(flipped).reshape(-1).astype(bool)
    for name, arr in (("y", labels), ("flipped", flips)):
        if len(arr) != len(a):
            raise ValueError(ERR_LENGTH.format(name=name, got=len(arr), n=len(a)))
    if len(a) < 5:
        raise ValueError(ERR_TOO_FEW.format(n=len(a)))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(a), size=min(len(a), max_points), replace=False))
    fig = _figure(12.0, 5.8)
    axes = fig.subplots(1, 2)
    for ax, feats, name in ((axes[0], a[keep], "float"), (axes[1], b[keep], "int8")):
        xy = _embed(feats, seed)
        for k, cls in enumerate(classes):
            mask = labels[keep] == k
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=16,
                c=OKABE_ITO[k % len(OKABE_ITO)],
                marker=CLASS_MARKERS[k % len(CLASS_MARKERS)],
                linewidths=0.3,
                edgecolors="0.3",
                label=f"{cls} ({int(mask.sum())})",
            )
        ring = flips[keep]
        ax.scatter(
            xy[ring, 0],
            xy[ring, 1],
            s=70,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            label=f"flipped by int8 ({int(ring.sum())})",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name} model")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    fig.suptitle(
        (f"{title}: " if title else "")
        + f"t-SNE of penultimate features ({len(keep)} examples, seed {seed})"
    )
    return _png(fig)


def _embed(features: NDArray[np.float64], seed: int) -> NDArray[np.float64]:
    """2-D t-SNE; wide features go through PCA to 50 first (scikit-learn's advice, faster)."""
    decomposition = require("sklearn.decomposition")
    manifold = require("sklearn.manifold")
    n = len(features)
    if features.shape[1] > 50 and n > 50:
        features = decomposition.PCA(50, random_state=seed).fit_transform(features)
    # Perplexity must stay below n; 30 is scikit-learn's default for larger sets.
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    model = manifold.TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed
    )
    return np.asarray(model.fit_transform(features), dtype=np.float64)


def penultimate_features(
    model: str | os.PathLike[str] | Any, x: ArrayLike, *, batch_size: int = 256
) -> NDArray[np.float32]:
    """The input of the classifier head for every example, shape ``(N, D)``.

    The head is the last layer with weights: the last Keras layer with a kernel (Dense, or
    the 1x1 Conv2D "Logits" of MobileNetV3), and in a ``.tflite`` the last op in execution
    order with a weight tensor (:data:`WEIGHTED_OPS`), so float and int8 features come from
    the same layer whichever form the classifier takes.

    ``model`` is a Keras 3 or tf_keras model object, a ``.keras``/``.h5`` file (loaded in safe
    mode), or a float or int8 ``.tflite`` file. For ``.tflite`` the tensor is read from the
    LiteRT interpreter with ``experimental_preserve_all_tensors=True`` and without the XNNPACK
    delegate (a delegated graph keeps its intermediate tensors to itself), then dequantized with
    the tensor's own scale and zero point; inputs are quantized with the model's input scale, as
    the gate's runner does. The reference kernels can differ from XNNPACK's in the last bit of
    a few values, so flips should come from the gate's predictions, not from this pass.
    """
    data = np.asarray(x, dtype=np.float32)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix == ".tflite":
            return _tflite_features(path, data, batch_size)
        if path.suffix not in (".keras", ".h5"):
            raise ValueError(ERR_MODEL_KIND.format(path=path))
        from qbias_check.runners import load_keras_model

        model = load_keras_model(path)
    return _keras_features(model, data, batch_size)


def _keras_features(model: Any, x: NDArray[np.float32], batch_size: int) -> NDArray[np.float32]:
    # The last layer with a kernel is the classifier head, even when a Softmax layer follows.
    head = next((layer for layer in reversed(model.layers) if hasattr(layer, "kernel")), None)
    if head is None:
        raise ValueError(ERR_NO_KERNEL_LAYER)
    family = require("tf_keras" if type(model).__module__.startswith("tf_keras") else "keras")
    extractor = family.Model(model.inputs, head.input)
    out = extractor.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float32).reshape(len(x), -1)


def _tflite_features(path: Path, x: NDArray[np.float32], batch_size: int) -> NDArray[np.float32]:
    litert = require("ai_edge_litert.interpreter")
    interp = litert.Interpreter(
        model_path=str(path),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    # Ops come in execution order, as Keras layers do; preferring FULLY_CONNECTED would pick a
    # squeeze-excite block's op in a network whose classifier is a convolution.
    heads = [o for o in interp._get_ops_details() if o["op_name"] in WEIGHTED_OPS]
    if not heads:
        raise ValueError(ERR_NO_HEAD.format(path=path))
    tensor = int(heads[-1]["inputs"][0])
    detail = next(d for d in interp.get_tensor_details() if d["index"] == tensor)
    inp = interp.get_input_details()[0]
    fixed = int(inp["shape_signature"][0])
    step = fixed if fixed > 0 else batch_size
    parts = []
    allocated = -1
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        n = len(chunk)
        if fixed > 0 and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), chunk.dtype)])
        if len(chunk) != allocated:
            if fixed <= 0:
                interp.resize_tensor_input(inp["index"], [len(chunk), *chunk.shape[1:]])
            interp.allocate_tensors()
            allocated = len(chunk)
        interp.set_tensor(inp["index"], _quantize(chunk, inp))
        interp.invoke()
        parts.append(_dequantize(interp.get_tensor(tensor), detail)[:n].reshape(n, -1))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _quantize(batch: NDArray[np.float32], detail: Mapping[str, Any]) -> NDArray[Any]:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return batch.astype(dtype)
    info = np.iinfo(dtype)
    values = np.clip(np.rint(batch / np.float32(scale)) + zero_point, info.min, info.max)
    return np.asarray(values).astype(dtype)


def _dequantize(raw: NDArray[Any], detail: Mapping[str, Any]) -> NDArray[np.float32]:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(raw.dtype, np.integer) and scale != 0:
        return ((raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(
            np.float32
        )
    return raw.astype(np.float32)
