"""Tables of scores as papers print them: plain text, Markdown, CSV and LaTeX (booktabs).

``format_table``: one row per method, one column per score (one dataset). ``format_results``: methods x test sets,
the datasets as column groups, the best value of each column in bold and the second underlined, each metric's
direction respected (lower MAE is better). Ranks are decided on the printed values, so equal printed values share
a mark.
"""

from __future__ import annotations

from segkit.conventions import lower_is_better
from segkit.errors import SegkitError

FORMATS = ("text", "md", "csv", "latex")
DEFAULT_PAPER_METRICS = ("max_fm", "mae", "sm", "mean_em")

# score key -> (plain label, LaTeX label); keys without one are printed as they are
METRIC_LABELS = {
    "max_fm": ("maxF", r"$F_\beta^{\max}$"),
    "mean_fm": ("meanF", r"$F_\beta^{\mathrm{mean}}$"),
    "adp_fm": ("adpF", r"$F_\beta^{\mathrm{adp}}$"),
    "wfm": ("wF", r"$F_\beta^{w}$"),
    "mae": ("MAE", r"$\mathcal{M}$"),
    "sm": ("S", r"$S_\alpha$"),
    "max_em": ("maxE", r"$E_\phi^{\max}$"),
    "mean_em": ("meanE", r"$E_\phi^{\mathrm{mean}}$"),
    "adp_em": ("adpE", r"$E_\phi^{\mathrm{adp}}$"),
    "boundary_iou": ("BIoU", "BIoU"),
    "miou": ("mIoU", "mIoU"),
    "mdice": ("mDice", "mDice"),
    "max_dice": ("maxDice", r"$\mathrm{Dice}^{\max}$"),
    "max_iou": ("maxIoU", r"$\mathrm{IoU}^{\max}$"),
}


def score_key(task, name: str, flag: str) -> str:
    """The score key (``mae``, ``max_fm``, ``miou`` ...) a user's ``name`` means for ``task``: a key, a table label
    (``maxF``, ``MAE``, ``meanE``) or a caption label (``IoU``, ``BIoU``), any case; otherwise an error naming
    ``flag`` and the valid keys."""
    if name in task.metric_keys:
        return name
    labels = {plain.lower(): key for key, (plain, _) in METRIC_LABELS.items()}
    labels |= {caption.lower(): key for caption, key in task.caption_keys.items()}
    key = labels.get(name.lower(), name.lower())
    if key not in task.metric_keys:
        valid = ", ".join([*task.metric_keys, *task.caption_keys])
        raise SegkitError(f"{flag}: '{name}' is not a {task.name} score; valid: {valid}")
    return key


def label(metric: str, latex: bool = False) -> str:
    plain, tex = METRIC_LABELS.get(metric, (metric, metric.replace("_", r"\_")))
    if not latex:
        return plain
    arrow = r"\downarrow" if lower_is_better(metric) else r"\uparrow"
    return tex[:-1] + arrow + "$" if tex.endswith("$") else tex + f"${arrow}$"


def format_table(
    rows: dict[str, dict[str, float]],
    keys: tuple[str, ...],
    fmt: str = "text",
    counts: dict[str, int] | None = None,
    digits: int = 4,
) -> str:
    """A table with one row per method (``rows``: method -> scalar scores): plain text, Markdown, CSV or LaTeX;
    ``counts`` adds each method's number of scored images (column ``n``)."""
    header = ["method", *keys, *(["n"] if counts else [])]
    body = [
        [name, *(f"{scores[k]:.{digits}f}" for k in keys), *([str(counts[name])] if counts else [])]
        for name, scores in rows.items()
    ]
    if fmt == "csv":
        return "\n".join(",".join(r) for r in [header, *body])
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    if fmt == "latex":
        cols = "l" + "c" * (len(header) - 1)
        names = [k.replace("_", r"\_") for k in header]
        lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(names) + r" \\", r"\midrule"]
        lines += [" & ".join(r[:1] + r[1:]).replace("_", r"\_") + r" \\" for r in body]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])
    if fmt == "text":
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body])
    raise SegkitError(f"--format must be text, md, csv or latex, got '{fmt}'")


def ranks(values: list[float | None], metric: str, digits: int) -> list[int]:
    """Each value's mark: 1 best, 2 second, 0 neither (or missing). Compared as printed (rounded to ``digits``);
    with fewer than two values nothing is marked."""
    shown = [None if v is None or v != v else round(v, digits) for v in values]
    distinct = sorted({v for v in shown if v is not None}, reverse=not lower_is_better(metric))
    if sum(v is not None for v in shown) < 2:
        return [0] * len(values)
    order = {v: i + 1 for i, v in enumerate(distinct[:2])}
    return [order.get(v, 0) if v is not None else 0 for v in shown]


def format_results(results, metrics: tuple[str, ...], fmt: str = "text", digits: int = 3) -> str:
    """Methods x datasets (``segkit.evaluation.paper.Results``): a column group per dataset, ``metrics`` in each."""
    if fmt not in FORMATS:
        raise SegkitError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    columns = [(d, m) for d in results.datasets for m in metrics]
    values = {c: [results.value(c[0], method, c[1]) for method in results.methods] for c in columns}
    marks = {c: ranks(values[c], c[1], digits) for c in columns}
    cells = [
        [(values[c][i], marks[c][i]) for c in columns] for i in range(len(results.methods))
    ]  # row per method: (value, mark) per column
    writer = {"text": _text, "md": _markdown, "csv": _csv, "latex": _latex}[fmt]
    return writer(results.datasets, metrics, results.methods, cells, digits)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _text(datasets, metrics, methods, cells, digits) -> str:
    head1 = ["", *[d if j == 0 else "" for d in datasets for j in range(len(metrics))]]
    head2 = ["method", *[label(m) for _ in datasets for m in metrics]]
    body = [
        [name, *(_number(v, digits) + {1: "*", 2: "+"}.get(r, " ") for v, r in row)]
        for name, row in zip(methods, cells, strict=True)
    ]
    table = [head1, head2, *body]
    widths = [max(len(r[i]) for r in table) for i in range(len(head2))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines + ["* best, + second in each column (lowest MAE; highest otherwise)"])


def _markdown(datasets, metrics, methods, cells, digits) -> str:
    def cell(v, r):
        text = _number(v, digits)
        return f"**{text}**" if r == 1 else (f"<u>{text}</u>" if r == 2 else text)

    head = ["method", *[f"{d} {label(m)}" for d in datasets for m in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        "| " + " | ".join([n, *(cell(v, r) for v, r in row)]) + " |" for n, row in zip(methods, cells, strict=True)
    ]
    return "\n".join(lines)


def _csv(datasets, metrics, methods, cells, digits) -> str:
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["method", *[f"{d}/{m}" for d in datasets for m in metrics]])
    for name, row in zip(methods, cells, strict=True):
        w.writerow([name, *("" if v is None else repr(float(v)) for v, _ in row)])
    return out.getvalue().rstrip("\n")


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def _latex(datasets, metrics, methods, cells, digits) -> str:
    k = len(metrics)
    cols = "l" + ("c" * k) * len(datasets)
    groups = " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_tex_escape(d)}}}" for d in datasets)
    rules = " ".join(rf"\cmidrule(lr){{{2 + i * k}-{1 + (i + 1) * k}}}" for i in range(len(datasets)))
    names = " & ".join(label(m, latex=True) for _ in datasets for m in metrics)

    def cell(v, r):
        text = _number(v, digits)
        return rf"\textbf{{{text}}}" if r == 1 else (rf"\underline{{{text}}}" if r == 2 else text)

    lines = [
        "% requires \\usepackage{booktabs}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        rf" & {groups} \\",
        rules,
        rf"Method & {names} \\",
        r"\midrule",
    ]
    lines += [
        " & ".join([_tex_escape(n), *(cell(v, r) for v, r in row)]) + r" \\"
        for n, row in zip(methods, cells, strict=True)
    ]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])
