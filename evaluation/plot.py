"""The precision-at-k plot of an evaluation run: one panel per query kind, broad and fine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

KS = (10, 20, 50, 100)


def precision_plot(results: dict[str, Any], path: Path) -> Path:
    """P@k (solid: broad, dashed: fine) per strategy, a panel per query kind; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results["kinds"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.6), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    names = sorted({name for rows in results["kinds"].values() for name in rows}, key=_strategy_order)
    for ax, kind in zip(axes[0], kinds, strict=True):
        rows = results["kinds"][kind]
        for name in names:
            if name not in rows:
                continue
            colour = colours(names.index(name) % 10)
            ax.plot(KS, [rows[name][f"P@{k}"] for k in KS], marker="o", color=colour, label=name)
            ax.plot(KS, [rows[name][f"P@{k} fine"] for k in KS], marker="x", linestyle="--", color=colour)
        count = results.get("counts", {}).get(kind)
        ax.set_title(f"{kind} queries" + (f" ({count})" if count else ""))
        ax.set_xscale("log")
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.set_xlabel("k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("precision at k (solid: broad, dashed: fine)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), frameon=False)
    fig.suptitle(f"Myntra test split, variant {results.get('variant', '?')}: precision at k")
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(labels) // 5), 1, 0.95))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


ORDER = ("BM25", "text kNN", "cross-modal kNN", "image kNN", "caption kNN", "photo words", "photo words, all words +2", "product vector", "hybrid RRF", "hybrid linear", "hybrid RRF + MMR", "tuned", "tuned + MMR")


def _strategy_order(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)
