"""docs/evaluation.md from the outputs of ``eval`` and ``tune``: every table, the aims, and where hybrid loses."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.harness import LOOKS_THRESHOLD, STRATEGIES, markdown_table
from evaluation.reword import SUFFIX
from evaluation.tuning import MIN_FEEDBACK_GAIN

COLUMNS = ["NDCG@10", "P@10", "P@10 fine", "P@20", "P@20 fine", "P@50", "P@50 fine", "P@100", "P@100 fine", "R@100 fine", "MRR fine", "looks@10"]
SINGLE_LEGS = tuple(s.name for s in STRATEGIES if s.legs is not None and len(s.legs) == 1)  # the strategies of one leg
AIMS = {"full": 1.05, "sparse": 1.2}  # best hybrid NDCG@10 over the best single leg (issue 5), shown per query kind
# The single legs the protocol lists (../shared/eval/README.md, "Strategies to report at least"); the project's own
# single legs (photo captions, photo words, caption kNN, the all-words bonus) are stronger bars than these.
PROTOCOL_LEGS = ("BM25", "text kNN", "cross-modal kNN", "image kNN", "product vector")
COMMAND = "bash scripts/evaluate.sh"


def _is_hybrid(name: str) -> bool:
    return name.startswith(("hybrid", "tuned"))


def losses(rows: dict[str, dict[str, float]], metrics: tuple[str, ...] = ("NDCG@10", "P@10", "P@10 fine")) -> list[str]:
    """Sentences for every hybrid strategy that scores below the best single leg on a metric."""
    found = []
    singles = {n: m for n, m in rows.items() if n in SINGLE_LEGS}
    if not singles:
        return found
    for metric in metrics:
        leader = max(singles, key=lambda n: singles[n][metric])
        for name, values in rows.items():
            if _is_hybrid(name) and values[metric] < singles[leader][metric]:
                found.append(f"{name} {values[metric]:.3f} < {leader} {singles[leader][metric]:.3f} on {metric}")
    return found


def mmr_line(rows: dict[str, dict[str, float]]) -> str:
    """What diversification did to precision and to the number of distinct looks on the first page."""
    parts = []
    for name in rows:
        base = name[: -len(" + MMR")] if name.endswith(" + MMR") else None
        if base and base in rows:
            a, b = rows[base], rows[name]
            parts.append(f"MMR on {base}: P@10 {a['P@10']:.3f} → {b['P@10']:.3f}, P@10 fine {a['P@10 fine']:.3f} → "
                         f"{b['P@10 fine']:.3f}, distinct looks in the top 10 {a['looks@10']:.2f} → {b['looks@10']:.2f}")
    return "; ".join(parts) + "." if parts else ""


def aim_line(variant: str, rows: dict[str, dict[str, float]]) -> str:
    """The best hybrid against the best single leg; where the aim is not met, the NDCG@10 it would need
    (said plainly where that is above 1, which no ranking scores), and the ratio against the best of the
    protocol's own single legs alone."""
    singles = {n: m["NDCG@10"] for n, m in rows.items() if n in SINGLE_LEGS}
    hybrids = {n: m["NDCG@10"] for n, m in rows.items() if _is_hybrid(n)}
    best_single = max(singles, key=singles.__getitem__)
    best_hybrid = max(hybrids, key=hybrids.__getitem__)
    ratio = hybrids[best_hybrid] / singles[best_single]
    aim = AIMS.get(variant)
    verdict = ""
    if aim is not None:
        needed = aim * singles[best_single]
        verdict = (f" (aim ≥ {aim}: **met**)" if ratio >= aim else
                   f" (aim ≥ {aim}: **not met**; it needs {needed:.3f}"
                   + (", above the 1.000 that a perfect ranking scores)" if needed > 1 else ")"))
    line = (f"best hybrid **{best_hybrid}** {hybrids[best_hybrid]:.3f} vs best single leg **{best_single}** "
            f"{singles[best_single]:.3f}: **{ratio:.2f}×**{verdict}")
    protocol = {n: v for n, v in singles.items() if n in PROTOCOL_LEGS}
    if protocol and max(protocol.values()) < singles[best_single]:
        leader = max(protocol, key=protocol.__getitem__)
        line += (f". Against the protocol's own single legs alone (BM25 on the text field, the kNN legs, the product vector): "
                 f"**{leader}** {protocol[leader]:.3f}, **{hybrids[best_hybrid] / protocol[leader]:.2f}×**")
    return line


def reworded_section(
    dev: dict[str, dict[str, dict[str, float]]],
    reworded: dict[str, dict[str, dict[str, float]]],
    dev_scores: dict[str, dict[str, dict[str, float]]] | None = None,
    reworded_scores: dict[str, dict[str, dict[str, float]]] | None = None,
    reworded_as: dict[str, str | None] | None = None,
) -> list[str]:
    """Per query kind: each strategy's NDCG@10 and P@10 fine on the dev wording and reworded, and
    which strategies beat ``tuned`` once the wording changes (the profile was chosen on the dev wording).
    Given per-query NDCG@10 of both runs (``{kind: {strategy: {query id: score}}}``) and what each
    reworded query had reworded, also the mean change by what was reworded."""
    out: list[str] = []
    for kind, rows in reworded.items():
        before = dev.get(kind, {})
        lines = ["| strategy | NDCG@10 dev | NDCG@10 reworded | change | P@10 fine dev | P@10 fine reworded |",
                 "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, values in rows.items():
            if name not in before:
                continue
            a, b = before[name], values
            lines.append(f"| {name} | {a['NDCG@10']:.3f} | {b['NDCG@10']:.3f} | {b['NDCG@10'] - a['NDCG@10']:+.3f} | "
                         f"{a['P@10 fine']:.3f} | {b['P@10 fine']:.3f} |")
        out += [f"#### {kind} queries, reworded", "", *lines, ""]
        if "tuned" in rows:
            ahead = sorted((n for n in rows if not n.startswith("tuned") and rows[n]["NDCG@10"] > rows["tuned"]["NDCG@10"]),
                           key=lambda n: -rows[n]["NDCG@10"])
            out += ["Ahead of tuned when reworded: " + (", ".join(f"{n} {rows[n]['NDCG@10']:.3f}" for n in ahead)
                                                         + f" (tuned {rows['tuned']['NDCG@10']:.3f})." if ahead else "none."), ""]
        if dev_scores and reworded_scores and reworded_as and kind in dev_scores and kind in reworded_scores:
            out += by_what_was_reworded(dev_scores[kind], reworded_scores[kind], reworded_as)
    return out


def by_what_was_reworded(
    dev_scores: dict[str, dict[str, float]], reworded_scores: dict[str, dict[str, float]], reworded_as: dict[str, str | None]
) -> list[str]:
    """Mean NDCG@10 change per strategy, grouped by what the rewording changed (article type, gender,
    colour, phrasing): which wording each strategy leans on."""
    strategies = [s for s in reworded_scores if s in dev_scores]
    groups: dict[str, list[str]] = {}
    for qid in reworded_scores[strategies[0]] if strategies else []:
        original = qid.removesuffix(SUFFIX)
        if all(original in dev_scores[s] and qid in reworded_scores[s] for s in strategies):
            groups.setdefault(reworded_as.get(qid) or "nothing", []).append(qid)
    if not groups:
        return []
    lines = ["| reworded | queries | " + " | ".join(strategies) + " |", "| --- | ---: |" + " ---: |" * len(strategies)]
    for what in sorted(groups, key=lambda w: (-len(groups[w]), w)):
        ids = groups[what]
        cells = [f"{np.mean([reworded_scores[s][q] - dev_scores[s][q.removesuffix(SUFFIX)] for q in ids]):+.3f}" for s in strategies]
        lines.append(f"| {what} | {len(ids)} | " + " | ".join(cells) + " |")
    return ["Mean NDCG@10 change by what was reworded:", "", *lines, ""]


def _tuning_section(profile: dict[str, Any]) -> list[str]:
    lines = [("| query kind | queries | best single leg | default RRF | tuned, in-sample | tuned, cross-validated (per fold) | chosen "
              "| + feedback, nested cross-validated (per fold) | feedback | + term feedback, nested cross-validated (per fold) | term feedback |"),
             "| --- | ---: | --- | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for kind, r in profile.get("notes", {}).get("tuning", {}).items():
        chosen = r["chosen"]
        how = f"rrf k={chosen['rank_constant']}" if chosen["method"] == "rrf" else f"linear {chosen['normalizer']}"
        weights = ", ".join(f"{k} {v:g}" for k, v in chosen["weights"].items())
        if chosen.get("all_terms_boost"):
            weights += f"; all words +{chosen['all_terms_boost']:g}"
        folds = ", ".join(f"{x:.3f}" for x in r["cross_validated"]["per_fold"])
        feedback, kept = r.get("feedback"), "not tuned"
        nested = "–"
        if feedback:
            per_fold = ", ".join(f"{x:.3f}" for x in feedback["cross_validated"]["per_fold"])
            nested = f"{feedback['cross_validated']['estimate']:.3f} ({per_fold})"
            best = feedback.get("best_candidate")
            kept = _feedback_text(feedback["chosen"]) if feedback["chosen"] else (
                f"off (best candidate {_feedback_text(best)}, in-sample {feedback['in_sample']:.3f}, did not beat the fusion "
                f"cross-validated by {MIN_FEEDBACK_GAIN})" if best else "off (no candidate beat the fusion in-sample)")
        term_nested, term_kept = _term_feedback_cells((feedback or {}).get("term_feedback"))
        lines.append(f"| {kind} | {r['queries']} | {r['best_single_leg']['leg']} {r['best_single_leg']['score']:.3f} | "
                     f"{r['default_rrf']:.3f} | {r['in_sample']:.3f} | {r['cross_validated']['estimate']:.3f} ({folds}) | {how}: {weights} "
                     f"| {nested} | {kept} | {term_nested} | {term_kept} |")
    return lines


def _term_feedback_cells(terms: dict[str, Any] | None) -> tuple[str, str]:
    """The tuning table's term feedback cells: the nested estimate (per fold), and what was kept or why not."""
    if not terms:
        return "–", "not tuned"
    per_fold = ", ".join(f"{x:.3f}" for x in terms["cross_validated"]["per_fold"])
    nested = f"{terms['cross_validated']['estimate']:.3f} ({per_fold})"
    best = terms.get("best_candidate")
    if terms["chosen"]:
        return nested, _term_feedback_text(terms["chosen"])
    if best:
        return nested, (f"off (best candidate {_term_feedback_text(best)}, in-sample {terms['in_sample']:.3f}, did not beat "
                        f"{terms['without_term_feedback_cross_validated']:.3f} cross-validated by {MIN_FEEDBACK_GAIN})")
    return nested, "off (no candidate beat the first round in-sample)"


def _term_feedback_text(terms: dict[str, Any]) -> str:
    return f"words shared by {terms['min_share']:g} of the top {terms['depth']} (at most {terms['max_terms']}), leg weight {terms['weight']:g}"


def _feedback_text(feedback: dict[str, Any]) -> str:
    return (f"{feedback['field']}, top {feedback['depth']}, query weight {feedback['query_weight']:g}, "
            f"leg weight {feedback['weight']:g}")


def _ceil2(value: float) -> float:
    return math.ceil(value * 100 - 1e-9) / 100


def own_photo_context(result: dict[str, Any]) -> str:
    """What own-photo recall is up against, from what ``eval`` measured (nothing for older results)."""
    text = ""
    if "own_photo_oracle@10" in result:
        text += (f". A tower that saw exactly a photo's article type, colour and gender, and nothing else, would reach "
                 f"{result['own_photo_oracle@10']:.3f}: the rest is what titles say beyond those (brand, print, a model's look)")
    misses = result.get("own_photo_misses")
    if misses and misses["misses"]:
        share = {k: v / misses["misses"] for k, v in misses["first_hit_differs_in"].items()}
        text += (f". Of the {misses['misses']:,} titles whose photo is not in the first 10, the photo ranked first differs from the "
                 f"product in article type for {share['article_type']:.0%}, else in colour for {share['colour']:.0%}, else in gender "
                 f"for {share['gender']:.0%}, and in none of the three for {share['none']:.0%}")
    return text + ("." if text else "")


def looks_scale(results: dict[str, dict[str, Any]]) -> str:
    """What the looks threshold means for the tower these results were measured with, from the spread
    ``eval`` measured on its image vectors (image vectors do not depend on the variant's titles)."""
    spread = next((r["image_cosines"] for r in results.values() if r.get("image_cosines")), None)
    if spread is None:
        return ""  # results from before eval measured it
    # rounded up: "below 0.83" for a percentile of 0.835 would be false
    text = (f"; with this tower, 99.9 % of {spread['random_pairs']:,} random pairs of test photos are below "
            f"{_ceil2(spread['random_p99.9']):.2f}")
    if spread.get("same_title_median") is not None:
        text += (f", and half of the {spread['same_title_pairs']:,} pairs of products with identical titles are below "
                 f"{_ceil2(spread['same_title_median']):.2f}")
    return text


def render(results: dict[str, dict[str, Any]], profiles: dict[str, dict[str, Any]], plots: dict[str, str],
           reworded: dict[str, dict[str, Any]] | None = None) -> str:
    out = [
        "# Evaluation",
        "",
        f"Generated by `{COMMAND}` (it runs `hybrid-search tune`, `hybrid-search eval` for both variants, with and "
        "without `--reworded`, and `hybrid-search eval-report`); do not edit by hand. Protocol: `../shared/eval/README.md` (Myntra test split, "
        "8,785 products; dev queries). Metrics by ranx; `looks@10` is the mean number of distinct looks in the "
        f"first ten hits (image vectors closer than cosine {LOOKS_THRESHOLD:g} count as one look{looks_scale(results)}).",
        "",
        "Strategies: the protocol's single legs and fusions (`BM25`: the text field alone; `hybrid RRF`: every leg, weights 1, k=60; "
        "`hybrid linear`: min-max normalized sum); `BM25 + photo captions`: the same leg over the title and the caption the indexer "
        "writes beside it, each product's photo read facet by facet as photo words reads a query photo (\"Women Green Kurtas\"; a single leg, counted "
        "as one in the aims; the fusions' BM25 and photo-words legs search the captions too); `caption kNN`: the query photo against the products' text vectors (the tower's image space is "
        "MiniLM's text space; not in the protocol's list, a single leg, counted as one in the aims); `photo words`: BM25 over "
        "the query photo read facet by facet (\"Men Navy Blue Tshirts\"; the facets and values of the tower's photo vocabulary, rows of "
        "gender, colour and article type seen in the train split; read by the tower's photo reader, a linear head per facet fitted on "
        "the train split's photos, where the space has one, else zero-shot against the phrases), a value the query's text names "
        "replacing the photo's (a single leg, counted as one "
        "in the aims); `…, all words +2`: the leg plus 2 for every product holding all its words "
        "(`all_terms_boost`; single legs, counted as such in the aims); `tuned`: the fusion profile `hybrid-search tune` chose on the same dev queries "
        "(so its row is in-sample; the cross-validated estimate in the tuning table is the number to expect on new "
        "queries); `tuned, no feedback`: the same profile without its pseudo-relevance feedback, vector and term (shown where the profile "
        "keeps feedback for some kind); `+ MMR`: the first 50 hits re-ranked by maximal marginal relevance over image vectors (λ = 0.7). "
        "The fusions run the word check (a query word none of the text leg's 100 nearest products uses counts at 0.1 in BM25; "
        "on by default); the single legs run as themselves, without it.",
        "",
    ]
    for variant in ("full", "sparse"):
        if variant not in results:
            continue
        r = results[variant]
        out += [f"## Variant `{variant}` ({'title' if variant == 'full' else 'title_sparse'})", ""]
        models = ", ".join(f"{k}: `{v}`" for k, v in r.get("models", {}).items())
        synonyms = r.get("synonyms")
        lexical = ""  # results from before synonyms say nothing of them
        if synonyms and synonyms["rules"]:
            lexical = f" BM25 synonyms: `{synonyms['setting']}`, {synonyms['rules']} rules, at search time."
        elif synonyms:
            lexical = " BM25 synonyms: none."
        out += [f"Store: {r.get('store', 'embedded')}. Models: {models}.{lexical}", ""]
        for kind, rows in r["kinds"].items():
            out += [f"**Aim ({kind} queries, NDCG@10):** " + aim_line(variant, rows), ""]
        if "own_photo_recall@10" in r:
            out += [f"Own-photo Recall@10 (a product's title finds its own photo among the 8,785): {r['own_photo_recall@10']:.3f}"
                    + own_photo_context(r), ""]
        if r.get("photo_caption_accuracy"):
            read = ", ".join(f"{facet.replace('_', ' ')} {share:.0%}" for facet, share in r["photo_caption_accuracy"].items())
            out += [(f"Photo captions (each product's photo read facet by facet, the `photo_caption` field BM25 searches): "
                     f"right for {read} of the test products."), ""]
        if variant in plots:
            out += [f"![precision at k, {variant}]({plots[variant]})", ""]
        for kind, rows in r["kinds"].items():
            count = r.get("counts", {}).get(kind, "?")
            out += [f"### {kind} queries ({count})", "", markdown_table(rows, COLUMNS), ""]
            lost = losses(rows)
            out += ["Where hybrid loses here: " + ("; ".join(lost) + "." if lost else "nowhere on NDCG@10, P@10 or P@10 fine."), ""]
            out += [mmr_line(rows)] if mmr_line(rows) else []
            out += [""] if mmr_line(rows) else []
        if variant in profiles:
            out += [f"### Tuning (`fusion-profile-{variant}.json`)", "", *_tuning_section(profiles[variant]), ""]
        if reworded and variant in reworded:
            out += [f"### Reworded dev queries ({variant})", "",
                    "The same strategies on the dev text queries reworded once each (`eval --reworded`, "
                    "`evaluation/reword.py`: one article-type, gender or colour phrase in other words that keep its "
                    "judgment, such as `tee` for `t-shirt`, `ladies` for `women`, `gray` for `grey`; the image + text "
                    "queries' connective as a longer request, `show me this in`; or a text query as a whole put in a "
                    "request, `show me ...`, `i am looking for ...`, `... please`). The single legs run without the word "
                    "check, the hybrids with it (README, \"The word check\"). The held-out "
                    "queries are worded differently from the dev ones; this is one guess at how, never used for tuning. "
                    "Below each table, the mean change per strategy by what was reworded shows which wording a strategy leans on.", "",
                    *reworded_section(r["kinds"], reworded[variant]["kinds"], r.get("per_query", {}).get("NDCG@10"),
                                      reworded[variant].get("per_query", {}).get("NDCG@10"), reworded[variant].get("reworded_as"))]
    return "\n".join(out).rstrip() + "\n"


def write_report(results_dir: Path, out_file: Path) -> Path:
    """Render the report; copy the plots, results and profiles next to it (``<out dir>/eval/``)."""
    results, profiles, plots, reworded = {}, {}, {}, {}
    assets = out_file.parent / "eval"
    assets.mkdir(parents=True, exist_ok=True)
    for variant in ("full", "sparse"):
        found = results_dir / f"results-{variant}.json"
        if found.exists():
            results[variant] = json.loads(found.read_text())
            _copy(found, assets)
        profile = results_dir / f"fusion-profile-{variant}.json"
        if profile.exists():
            profiles[variant] = json.loads(profile.read_text())
            _copy(profile, assets)
        again = results_dir / f"results-{variant}-reworded.json"
        if again.exists():
            reworded[variant] = json.loads(again.read_text())
            _copy(again, assets)
        plot = results_dir / f"precision-{variant}.png"
        if plot.exists():
            _copy(plot, assets)
            plots[variant] = f"eval/{plot.name}"
    if not results:
        raise FileNotFoundError(f"no results-full.json or results-sparse.json in {results_dir}")
    out_file.write_text(render(results, profiles, plots, reworded))
    return out_file


def _copy(path: Path, folder: Path) -> None:
    target = folder / path.name
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
