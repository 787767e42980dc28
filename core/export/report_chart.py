"""The trade-off charts of the report as PNG bytes (matplotlib, no window:
a bare ``Figure`` renders with the Agg canvas and never touches pyplot's
global state or a GUI toolkit). PNG rather than SVG so the report shows the
same in any browser or mail client that opens an HTML attachment."""

from __future__ import annotations

import io


def tradeoff_png(
    points: list[tuple[float, float]],
    labels: list[str],
    chosen: int | None,
    original: int | None,
    x_label: str,
    y_label: str,
    title: str,
    front: list[int],
    broken: list[bool] | None = None,
    elsewhere: list[bool] | None = None,
) -> bytes:
    """Every run as a dot, ``front`` (indices, chosen by the report's rule:
    core.results.pareto.why_off_front) as a line, collapsed runs as
    crosses, runs measured otherwise (``elsewhere``) as hollow circles, the
    original and the chosen run marked; lower is better on both axes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    broken = broken or [False] * len(points)
    elsewhere = elsewhere or [False] * len(points)
    plain = [i for i in range(len(points)) if not broken[i] and not elsewhere[i]]
    other = [i for i in range(len(points)) if elsewhere[i] and not broken[i]]
    collapsed = [i for i in range(len(points)) if broken[i]]
    axes.scatter([xs[i] for i in plain], [ys[i] for i in plain], s=22, color="#9aa5b1",
                 label="runs", zorder=2)  # fmt: skip
    if other:
        axes.scatter([xs[i] for i in other], [ys[i] for i in other], s=26, facecolors="none",
                     edgecolors="#9aa5b1", label="measured otherwise (not on the line)",
                     zorder=2)  # fmt: skip
    if collapsed:
        axes.scatter([xs[i] for i in collapsed], [ys[i] for i in collapsed], s=40, marker="x",
                     color="#d62728", label="collapsed (BROKEN)", zorder=2)  # fmt: skip
    front = sorted(front, key=lambda i: xs[i])
    axes.plot(
        [xs[i] for i in front],
        [ys[i] for i in front],
        color="#1f77b4",
        linewidth=1.4,
        marker="o",
        markersize=4,
        label="Pareto front",
        zorder=3,
    )
    if original is not None:
        axes.scatter(
            [xs[original]], [ys[original]], s=90, marker="s", color="#444", label="original"
        )
    if chosen is not None:
        axes.scatter(
            [xs[chosen]], [ys[chosen]], s=200, marker="*", color="#d62728", label="exported"
        )
        axes.annotate(
            labels[chosen][:48],
            (xs[chosen], ys[chosen]),
            textcoords="offset points",
            xytext=(8, 6),
            fontsize=7,
        )
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
