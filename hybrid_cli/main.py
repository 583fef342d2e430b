"""``hybrid-search``: index through the queue, run workers, search, list bad items.

The command line sits on top of both paths and nothing imports it. Settings come
from ``HYBRID_SEARCH_*`` environment variables and an optional JSON config file
(``--config`` or ``HYBRID_SEARCH_CONFIG``), the same ones the workers read.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hybrid_core.config import Settings
from hybrid_core.errors import SearchError
from hybrid_core.filters import parse_filter_args
from hybrid_core.vocabulary import DEFAULT_TEMPERATURE

console = Console(stderr=True)
# Piped into a file or a CI log, rich would assume 80 columns and crop the wide tables' figures to
# "0.8…"; a terminal (or an explicit COLUMNS) keeps its own width.
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    sys.exit(2)


def _parse_weights(raw: str | None) -> dict[str, float]:
    if not raw:
        return {}
    weights: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise click.BadParameter(f"{part!r}: write leg=weight, e.g. bm25=1,text=0.5", param_hint="--weights")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number", param_hint="--weights") from None
    return weights


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@click.group()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="JSON settings file (see README).")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Multimodal hybrid search for product catalogues."""
    if config:
        os.environ["HYBRID_SEARCH_CONFIG"] = str(Path(config).resolve())
    try:
        ctx.obj = {"settings": Settings.from_env()}
    except SearchError as exc:
        _fail(str(exc))


@cli.command()
@click.argument("catalogue", type=click.Path(exists=True, dir_okay=False))
@click.option("--images-root", type=click.Path(file_okay=False), help="Root for relative image paths (default: the catalogue's folder).")
@click.option("--where", multiple=True, help="Only lines whose field equals a value, e.g. split=test (repeatable).")
@click.option("--title-field", default="title", show_default=True, help="Catalogue field to use as the title.")
@click.option("--batch-size", type=click.IntRange(1, 1024), help="Products per queued task (default from settings: 128).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the workers and show their progress.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@click.pass_context
def index(ctx, catalogue, images_root, where, title_field, batch_size, wait, timeout) -> None:
    """Queue a JSONL catalogue for indexing (upserts; lines with "op": "delete" delete)."""
    import time

    from indexer.celery_app import make_app
    from indexer.producer import BrokerUnavailable, catalogue_items, enqueue, parse_where
    from indexer.producer import wait as wait_for

    settings = _settings(ctx)
    try:
        selector = parse_where(where)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--where") from None
    root = str(Path(images_root or Path(catalogue).parent).resolve())
    app = make_app(settings)
    started = time.monotonic()
    try:
        with _progress() as progress:
            queued = progress.add_task("queued", total=None)
            submitted = enqueue(
                catalogue_items(catalogue, selector),
                app=app,
                batch_size=batch_size or settings.batch_size,
                options={"images_root": root, "title_field": title_field},
                on_batch=lambda n: progress.advance(queued, n),
                keep_payloads=wait,
            )
            progress.update(queued, total=submitted.items)
            if not wait:
                console.print(f"queued {submitted.items} items in {len(submitted.results)} batches")
                return
            done = progress.add_task("indexed", total=submitted.items)
            totals = wait_for(submitted, timeout_s=timeout, on_done=lambda n, *_: progress.advance(done, n))
    except BrokerUnavailable as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(f"{exc}; the workers go on, run `hybrid-search status` later")
    except Exception as exc:  # kombu/redis raise many types for "broker unreachable"
        if isinstance(exc, SearchError):
            _fail(str(exc))
        from kombu.utils.url import maybe_sanitize_url

        _fail(f"cannot queue updates through {maybe_sanitize_url(settings.broker_url)}: {exc.__class__.__name__}: {exc}")
    elapsed = time.monotonic() - started
    rate = submitted.items / elapsed if elapsed else 0.0
    console.print(
        f"{submitted.items} items in {elapsed:.1f} s ({rate:.1f}/s): {totals['written']} written, "
        f"{totals['deleted']} deleted, {totals['stale']} stale, {totals['reused_vectors']} kept their vectors, "
        f"{totals['errors']} bad items, {totals['failed_batches']} failed batches"
    )
    if totals["resent_batches"]:
        console.print(f"{totals['resent_batches']} batches the broker lost (a worker killed as it took them) were sent again")
    if totals["errors"]:
        console.print("list the bad items with: hybrid-search errors")
    if totals["failed_batches"]:
        sys.exit(1)


@cli.command()
@click.option("--concurrency", type=int, default=1, show_default=True, help="Worker processes (each loads the models).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--loglevel", default="info", show_default=True)
@click.option("--hostname", default=None, help="Celery node name (default: hybrid-search@%h).")
@click.pass_context
def worker(ctx, concurrency, pool, loglevel, hostname) -> None:
    """Run a Celery worker on the catalogue-update queue (same as `celery -A indexer.celery_app worker`)."""
    from indexer.celery_app import make_app

    settings = _settings(ctx)
    app = make_app(settings)
    argv = ["worker", "--loglevel", loglevel, "--concurrency", str(concurrency), "--pool", pool, "-Q", settings.queue]
    argv += ["--hostname", hostname or "hybrid-search@%h"]
    app.worker_main(argv)


@cli.command()
@click.argument("text", required=False)
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Query image (more like this).")
@click.option("--filter", "filters", multiple=True, help="field=value, field=a,b, field>=n (repeatable).")
@click.option("--fusion", type=click.Choice(["rrf", "linear"]), default="rrf", show_default=True)
@click.option("--weights", help="Per-leg weights, e.g. bm25=1,text=1,cross=0.5,image=1,product=1.")
@click.option("--normalizer", type=click.Choice(["minmax", "l2_norm", "none"]), default="minmax", show_default=True)
@click.option("--rank-constant", type=int, default=60, show_default=True)
@click.option("--window", "rank_window_size", type=int, default=100, show_default=True, help="rank_window_size.")
@click.option("--all-terms-boost", type=float, default=0.0, show_default=True,
              help="Added to a BM25 leg's score of each product holding all the leg's words (the query's; for photo_words, "
                   "the photo's phrase and the query's); 0: plain multi_match.")
@click.option("--legs", help="Only these legs, e.g. bm25,text (default: every leg that applies).")
@click.option("--size", type=int, default=10, show_default=True)
@click.option("--from", "offset", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--mode", type=click.Choice(["auto", "retrievers", "legacy", "legs"]), default="auto", show_default=True,
              help="Elasticsearch execution: server-side retrievers, legacy knn+query sum, client-side legs, or auto.")
@click.option("--show-request", is_flag=True, help="Print the Elasticsearch request as Kibana Dev Tools console text; do not search.")
@click.option("--fusion-profile", type=click.Path(exists=True, dir_okay=False),
              help="Fusion per query kind from `tune` (default: the fusion_profile setting); --fusion/--weights/... override it.")
@click.option("--diversify", "relevance_weight", type=float, default=None,
              help="MMR over image vectors: lambda in 0..1 (1 = relevance only), e.g. 0.7.")
@click.option("--diversify-top", type=int, default=50, show_default=True, help="How many fused hits MMR re-ranks.")
@click.option("--feedback", "feedback_field", type=click.Choice(["text_vector", "image_vector", "product_vector"]), default=None,
              help="Pseudo-relevance feedback: one more kNN leg over this field from the first fused hits' vectors.")
@click.option("--feedback-depth", type=int, default=10, show_default=True, help="How many first fused hits feedback averages.")
@click.option("--feedback-query-weight", type=float, default=0.5, show_default=True, help="Weight of the query's own vector in it.")
@click.option("--feedback-weight", type=float, default=1.0, show_default=True, help="Weight of the feedback leg in the fusion.")
@click.option("--term-feedback", "term_feedback_depth", type=int, default=None,
              help="Term feedback: one more BM25 leg from the words most of the first N fused hits share (N, e.g. 20).")
@click.option("--term-feedback-share", type=float, default=0.5, show_default=True,
              help="Share of those hits a word must be in to be searched.")
@click.option("--term-feedback-weight", type=float, default=1.0, show_default=True, help="Weight of the term feedback leg in the fusion.")
@click.option("--word-check/--no-word-check", default=True, show_default=True,
              help="Count faintly in BM25 the query's words that none of its nearest products (text kNN) use: "
                   "filler such as 'show me' or 'please' would otherwise rank the few titles that say it first.")
@click.option("--word-check-depth", type=int, default=100, show_default=True, help="How many nearest products place the words.")
@click.option("--word-check-min-count", type=int, default=3, show_default=True,
              help="How many of them must hold a word (or every product that holds it anywhere).")
@click.option("--unplaced-weight", type=float, default=0.1, show_default=True,
              help="Weight of an unplaced word's BM25 score (0: left out).")
@click.pass_context
def search(ctx, text, image, filters, fusion, weights, normalizer, rank_constant, rank_window_size, all_terms_boost, legs, size, offset,
           as_json, mode,
           show_request, fusion_profile, relevance_weight, diversify_top, feedback_field, feedback_depth, feedback_query_weight,
           feedback_weight, term_feedback_depth, term_feedback_share, term_feedback_weight, word_check, word_check_depth,
           word_check_min_count, unplaced_weight) -> None:
    """Hybrid search with text and/or an image; every hit is explained leg by leg."""
    from query_builder.diversify import Diversity
    from query_builder.feedback import Feedback
    from query_builder.es_requests import console as console_text
    from query_builder.es_searcher import ElasticsearchHybridSearcher
    from query_builder.profile import FusionProfile
    from query_builder.query import FusionConfig, HybridQuery
    from query_builder.searcher import HybridSearcher
    from query_builder.term_feedback import TermFeedback
    from query_builder.word_check import WordCheck

    settings = _settings(ctx)
    explicit = {name for name in ("fusion", "weights", "normalizer", "rank_constant", "rank_window_size", "all_terms_boost")
                if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    try:
        query = HybridQuery(
            text=text,
            image=image,
            filters=parse_filter_args(filters),
            size=size,
            offset=offset,
            fusion=FusionConfig(
                method=fusion,
                weights=_parse_weights(weights),
                rank_constant=rank_constant,
                rank_window_size=rank_window_size,
                normalizer=normalizer,
                all_terms_boost=all_terms_boost,
            ),
            legs=tuple(leg.strip() for leg in legs.split(",")) if legs else None,
            diversity=Diversity(relevance_weight, diversify_top) if relevance_weight is not None else None,
            feedback=Feedback(feedback_field, feedback_depth, feedback_query_weight, feedback_weight) if feedback_field else None,
            term_feedback=(TermFeedback(depth=term_feedback_depth, min_share=term_feedback_share, weight=term_feedback_weight)
                           if term_feedback_depth is not None else None),
            word_check=(WordCheck(depth=word_check_depth, min_count=word_check_min_count, unplaced_weight=unplaced_weight)
                        if word_check else None),
        )
        profile_path = fusion_profile or settings.fusion_profile
        if profile_path and not explicit:
            query = FusionProfile.load(profile_path).apply(query)
        text_space, image_space = settings.embedding_spaces()
        layout = settings.layout()
        on_es = settings.store == "elasticsearch"
        if show_request:
            store = settings.open_store() if on_es else _RequestOnly(settings.es_alias)
            searcher = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode=mode, vector_synonyms=settings.vector_synonyms)
            used, request, _ = searcher.requests(query)
            if not on_es and mode == "auto":
                console.print(f"no cluster to ask (embedded store): showing the {used} mode")
            if query.word_check is not None and query.text and not on_es:
                click.echo(f"# first the word check: one knn search over text_vector (k={query.word_check.depth}) and one "
                           "_msearch of size-0 counts per query word (among those products and in all); the multi_match below "
                           "then searches the placed words, the others at their unplaced weight (no cluster here to place them)")
            click.echo(f"# mode: {used}\n" + console_text(settings.es_alias, request))
            if query.feedback is not None and query.term_feedback is not None:
                click.echo(f"# then feedback and term feedback: GET {settings.es_alias}/_mget of the first "
                           f"{max(query.feedback.depth, query.term_feedback.depth)} fused hits' _source (one read for both), "
                           f"then at once one knn search over {query.feedback.field} from the first {query.feedback.depth}'s "
                           f"centroid and one multi_match search for the query's words and the words most of the first "
                           f"{query.term_feedback.depth} share (built from this round's answer)")
            elif query.feedback is not None:
                click.echo(f"# then feedback: GET {settings.es_alias}/_mget of the first {query.feedback.depth} fused hits' "
                           f"{query.feedback.field}, and one knn search over it from their centroid (built from this round's answer)")
            elif query.term_feedback is not None:
                click.echo(f"# then term feedback: GET {settings.es_alias}/_mget of the first {query.term_feedback.depth} fused hits' "
                           "_source, and one multi_match search for the query's words and the words most of them share "
                           "(built from this round's answer)")
            return
        store = settings.open_store()
        if on_es:
            searcher = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode=mode, vector_synonyms=settings.vector_synonyms)
        else:
            searcher = HybridSearcher(store, layout, text_space, image_space, vector_synonyms=settings.vector_synonyms)
        result = searcher.search(query)
    except SearchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{query.text or ''}{' + image' if image else ''}  ({query.fusion.method})", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("title")
    caption = layout.photo_caption.name if layout.photo_caption else None
    if caption:
        table.add_column("photo reads as")  # the caption BM25 searches beside the title
    for leg in result.legs:
        table.add_column(f"{leg}\nrank (score)", justify="right")
    for hit in result.hits:
        cells = [str(hit.rank), hit.id, f"{hit.score:.4f}", str(hit.source.get("title", ""))[:48]]
        if caption:
            cells.append(str(hit.source.get(caption, "")))
        for leg in result.legs:
            found = hit.legs.get(leg)
            cells.append(f"{found.rank if found.rank is not None else '?'} ({found.score:.3f})" if found else "-")
        table.add_row(*cells)
    out.print(table)
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in result.took_ms.items())
    out.print(f"legs: {', '.join(f'{k}={v}' for k, v in result.legs.items())}; {timing}")
    if "photo_words" in result.fusion:
        out.print(f"the photo searched as: {result.fusion['photo_words']}")
    if result.fusion.get("unplaced_words"):
        out.print(f"BM25 searched: {result.fusion['bm25_text']}; no nearby product uses {', '.join(result.fusion['unplaced_words'])} "
                  f"(counted at weight {query.word_check.unplaced_weight if query.word_check else 0})")
    if "term_feedback_text" in result.fusion:
        out.print(f"term feedback searched: {result.fusion['term_feedback_text'] or '(no shared words)'}")


class _RequestOnly:
    """Stands in for a store when only the request is printed (no cluster is contacted)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.client = None


@cli.command("es-setup")
@click.pass_context
def es_setup(ctx) -> None:
    """Create the layout's index behind the alias (or check the alias fits this layout)."""
    settings = _settings(ctx)
    if settings.store != "elasticsearch":
        _fail("es-setup needs HYBRID_SEARCH_STORE=elasticsearch and HYBRID_SEARCH_ES_URL")
    try:
        index = settings.open_store().ensure_index()
    except SearchError as exc:
        _fail(str(exc))
    out.print(f"alias {settings.es_alias} -> {index}")


@cli.command("es-swap")
@click.argument("source_alias")
@click.pass_context
def es_swap(ctx, source_alias: str) -> None:
    """Point the configured alias at the index behind SOURCE_ALIAS (a rebuild made beside the live one)."""
    settings = _settings(ctx)
    if settings.store != "elasticsearch":
        _fail("es-swap needs HYBRID_SEARCH_STORE=elasticsearch and HYBRID_SEARCH_ES_URL")
    store = settings.open_store()
    try:
        targets = list(store.client.indices.get_alias(name=source_alias).keys())
    except Exception as exc:
        _fail(f"cannot read alias {source_alias}: {exc}")
    if len(targets) != 1:
        _fail(f"alias {source_alias} points at {targets}; expected exactly one index")
    store.swap_alias(targets[0])
    out.print(f"alias {settings.es_alias} -> {targets[0]}")


@cli.command("kibana-import")
@click.option("--kibana-url", envvar="KIBANA_URL", default="http://127.0.0.1:5601", show_default=True)
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Saved objects NDJSON (default: the data view for the configured layout).")
@click.pass_context
def kibana_import(ctx, kibana_url: str, path: str | None) -> None:
    """Import the data view over the products alias into Kibana (saved objects API, overwrite)."""
    import urllib.request
    import uuid

    from hybrid_core import kibana

    settings = _settings(ctx)
    data = Path(path).read_bytes() if path else kibana.saved_objects(settings.layout(), settings.es_alias).encode()
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"export.ndjson\"\r\n"
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{kibana_url.rstrip('/')}/api/saved_objects/_import?overwrite=true",
        data=body,
        method="POST",
        headers={"kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    for header, var in (("Authorization", "KIBANA_AUTHORIZATION"),):
        if os.environ.get(var):
            request.add_header(header, os.environ[var])
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the user's Kibana)
            result = json.loads(response.read())
    except Exception as exc:
        _fail(f"cannot import into {kibana_url}: {exc}")
    if not result.get("success"):
        _fail(f"Kibana refused the import: {json.dumps(result.get('errors'))[:500]}")
    out.print(f"imported {result.get('successCount')} saved objects into {kibana_url}")


@cli.command()
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--clear", is_flag=True, help="Delete the recorded errors after listing them.")
@click.pass_context
def errors(ctx, limit, as_json, clear) -> None:
    """List bad catalogue items the workers recorded (newest first)."""
    store = _settings(ctx).open_store()
    try:
        records = store.list_errors(limit)
        if clear:
            store.clear_errors()
    except SearchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in records], indent=2, ensure_ascii=False))
        return
    if not records:
        out.print("no bad items recorded")
        return
    table = Table(title=f"bad items (newest {len(records)})")
    for column in ("at", "item", "id", "reason"):
        table.add_column(column)
    for r in records:
        table.add_row(r.at or "", r.item, r.product_id or "", r.reason)
    out.print(table)


@cli.command()
@click.pass_context
def status(ctx) -> None:
    """Where the store is, how many products it holds, and which models fill which vectors."""
    settings = _settings(ctx)
    layout = settings.layout()
    try:
        count = settings.open_store().count()
    except SearchError as exc:
        _fail(str(exc))
    out.print(f"store: {settings.store} at {settings.store_path}")
    out.print(f"products: {count}")
    out.print(f"broker: {settings.broker_url}")
    out.print(_queue_status(settings))
    for vf in layout.vector_fields:
        out.print(f"  {vf.name}: {vf.dims}-d {vf.similarity}, space {vf.space} ({vf.model_id}), from {vf.source}")


def _queue_status(settings: Settings) -> str:
    """Batches waiting on the queue and, with the ledger, batches not yet written and the oldest's age:
    a number that only grows, or an old entry, says workers are missing or stuck."""
    import time

    from indexer.celery_app import make_app
    from indexer.ledger import Ledger
    from indexer.redelivery import broker_errors, queue_length

    app = make_app(settings)
    try:
        line = f"queue {settings.queue}: {queue_length(app, settings.queue)} batches waiting"
        ledger = Ledger.for_app(app)
        if ledger is None:
            return line + "; ledger off"
        oldest = ledger.oldest()
        age = "" if oldest is None else f", the oldest sent {max(0.0, time.time() - oldest):.0f} s ago"
        return line + f"; {ledger.size()} batches not yet written (ledger){age}"
    except broker_errors() as exc:
        return f"queue {settings.queue}: broker unreachable ({str(exc).strip()})"


@cli.command()
@click.pass_context
def mappings(ctx) -> None:
    """Print the Elasticsearch index body (settings + mappings) for the configured models."""
    click.echo(json.dumps(_settings(ctx).layout().to_es_mapping(), indent=2))


@cli.command("train-image-tower")
@click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True, help="JSONL with split, title and image.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Checkpoints, log and the exported visual.pt.")
@click.option("--epochs", type=int, default=44, show_default=True, help="Epochs of the cosine schedule (--time-budget may plan fewer).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--limit", type=int, default=None, help="Use only the first N train products (smoke runs).")
@click.option("--architecture", default="catalogue_resnet_medium", show_default=True,
              help="hybrid_core/tower_nets.py's catalogue_resnet_medium, _small or _deep (for photos of about 80x64) or any timm image model.")
@click.option("--image-size", nargs=2, type=int, default=(80, 64), show_default=True, help="Height and width fed to the tower.")
@click.option("--projection", type=click.Choice(["", "linear", "mlp"]), default="", help="'' uses the timm classifier as the projection.")
@click.option("--drop", type=float, default=0.0, show_default=True, help="Dropout before a linear/mlp projection.")
@click.option("--drop-path", type=float, default=0.05, show_default=True)
@click.option("--augment-strength", type=float, default=1.0, show_default=True)
@click.option("--weight-decay", type=float, default=0.05, show_default=True)
@click.option("--single-positive", is_flag=True, help="Mask same-title pairs instead of treating them as positives.")
@click.option("--ema-decay", type=float, default=0.0, show_default=True, help="Validate and export a moving average of the weights (0: off; e.g. 0.997).")
@click.option("--flip-average", is_flag=True, help="Validate on photo+mirror averaged vectors (for a space with flip_average).")
@click.option(
    "--hard-negative-group",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="1: random batches; G: batches of random anchors each with G-1 look-alike (not identical) titles.",
)
@click.option("--hard-negative-pool", type=click.IntRange(min=1), default=20, show_default=True, help="Look-alikes are drawn from this many nearest titles.")
@click.option("--time-budget", "time_budget_min", type=click.FloatRange(min=0, min_open=True), default=50.0, show_default=True,
              help="Minutes for the whole run (loading included): after each epoch the schedule is shortened (never lengthened) so it ends in time.")
@click.option("--caption-fields", default="gender,colour,article_type", show_default=True,
              help="Comma-separated catalogue fields joined into a second text target per photo, e.g. gender,colour,article_type ('': off).")
@click.option("--caption-weight", type=click.FloatRange(min=0), default=0.5, show_default=True, help="Weight of the caption loss term.")
@click.option("--title-bank-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a loss term scoring each photo against every training title, not just the batch's (0: off).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Forward-pass arithmetic: bf16 autocast runs the thumbnail nets' steps about 1.7x faster where the CPU has AMX tiles "
                   "and many times slower where it has not; auto picks bf16 only with AMX.")
def train_image_tower(
    catalogue,
    out_dir,
    epochs,
    batch_size,
    lr,
    seed,
    threads,
    limit,
    architecture,
    image_size,
    projection,
    drop,
    drop_path,
    augment_strength,
    weight_decay,
    single_positive,
    ema_decay,
    flip_average,
    hard_negative_group,
    hard_negative_pool,
    time_budget_min,
    caption_fields,
    caption_weight,
    title_bank_weight,
    precision,
) -> None:
    """Train the catalogue image tower against the frozen MiniLM (train split only; resumes from --out).

    To ship a run: copy DIR/catalogue-tower.json to hybrid_core/model_configs/ and DIR/visual.pt to
    hybrid_core/model_weights/catalogue-tower-visual.pt."""
    from tower_training.train import TrainConfig, train

    config = TrainConfig(
        catalogue,
        out_dir,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        threads=threads,
        limit=limit,
        architecture=architecture,
        image_size=tuple(image_size),
        projection=projection,
        drop=drop,
        drop_path=drop_path,
        augment_strength=augment_strength,
        weight_decay=weight_decay,
        multi_positive=not single_positive,
        ema_decay=ema_decay,
        flip_average=flip_average,
        hard_negative_group=hard_negative_group,
        hard_negative_pool=hard_negative_pool,
        time_budget_min=time_budget_min,
        caption_fields=tuple(f.strip() for f in caption_fields.split(",") if f.strip()),
        caption_weight=caption_weight,
        title_bank_weight=title_bank_weight,
        precision=precision,
    )
    with _progress() as progress:
        current: dict[str, Any] = {}

        def phase(name: str, total: int):
            if "task" in current:
                progress.remove_task(current["task"])
            current["task"] = progress.add_task(name, total=total)
            return lambda n: progress.advance(current["task"], n)

        def epoch_done(record: dict[str, Any]) -> None:
            console.print(
                f"epoch {record['epoch']}: loss {record['loss']:.4f}, val recall@10 {record['val_recall@10']:.3f}, "
                f"temperature {record['temperature']:.4f}, {record['epoch_s']:.0f} s"
                + (f"; schedule shortened to {record['planned_epochs']} epochs to end within --time-budget"
                   if record["planned_epochs"] < epochs else "")
            )

        summary = train(config, on_phase=phase, on_epoch=epoch_done)
    console.print(f"best val recall@10 {summary['best_val_recall@10']:.3f}; weights in {Path(out_dir) / 'visual.pt'}")


def _selected_products(catalogue: str, where: tuple[str, ...]) -> tuple[list[dict], str]:
    """The catalogue's products that match every ``--where field=value``, and " (field=value, ...)" to
    say so in a file's source (empty without a selection)."""
    from indexer.producer import catalogue_items, parse_where

    try:
        selector = parse_where(where)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--where") from None
    products = [item["data"] for item in catalogue_items(catalogue, selector) if isinstance(item.get("data"), dict)]
    return products, (f" ({', '.join(f'{k}={v}' for k, v in selector.items())})" if selector else "")


@cli.command("photo-vocabulary")
@click.argument("catalogue", type=click.Path(exists=True, dir_okay=False))
@click.option("--fields", default="gender,colour,article_type", show_default=True,
              help="Catalogue fields whose values, joined in this order, make a phrase (a photo's words).")
@click.option("--where", multiple=True, help="Only lines whose field equals a value, e.g. split=train (repeatable).")
@click.option("--min-count", type=click.IntRange(min=1), default=2, show_default=True, help="Keep rows seen at least this often.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=DEFAULT_TEMPERATURE, show_default=True,
              help="Softmax temperature for reading a photo facet by facet; 0 takes the single closest phrase.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="The vocabulary JSON to write.")
def photo_vocabulary(catalogue, fields, where, min_count, temperature, out_file) -> None:
    """Build a photo vocabulary (the phrases the photo_words leg reads a photo as) from a catalogue.

    Name it as an image space's "vocabulary" in a config file. The packaged tower's is this command
    over ../shared/data/myntra/catalogue.jsonl with --where split=train (the tower's own training split)."""
    from hybrid_core.vocabulary import PhotoVocabulary

    names = tuple(f.strip() for f in fields.split(",") if f.strip())
    if not names:
        raise click.BadParameter("name at least one field", param_hint="--fields")
    products, selection = _selected_products(catalogue, where)
    try:
        vocabulary = PhotoVocabulary.from_products(
            products, names, min_count=min_count, temperature=temperature or None,
            source=f"{Path(catalogue).name}{selection}, {len(products):,} products: {', '.join(names)} rows seen at least {min_count} times",
        )
    except SearchError as exc:
        _fail(f"{catalogue}: {exc}")
    vocabulary.save(out_file)
    console.print(f"{len(vocabulary.rows):,} phrases from {len(products):,} products, e.g. {', '.join(vocabulary.phrases[:3])}: {out_file}")


@cli.command("photo-reader")
@click.argument("catalogue", type=click.Path(exists=True, dir_okay=False))
@click.option("--where", multiple=True, help="Only lines whose field equals a value, e.g. split=train (repeatable).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Root for relative image paths (default: the catalogue's folder).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="The reader (.npz) to write.")
@click.pass_context
def photo_reader(ctx, catalogue, where, images_root, out_file) -> None:
    """Fit a photo reader for the configured image space: a linear head per facet of its vocabulary, on
    the catalogue's photos and their values of those facets (hybrid_core/photo_reader.py).

    Name it as the image space's "photo_reader" in a config file. The packaged tower's is this command
    over ../shared/data/myntra/catalogue.jsonl with --where split=train (the tower's own training split)."""
    from tower_training.reader import fit_photo_reader

    products, selection = _selected_products(catalogue, where)
    _, image_space = _settings(ctx).embedding_spaces()
    if image_space is None:
        _fail("no image space is configured: a photo reader reads photo vectors")
    root = Path(images_root or Path(catalogue).parent).resolve()
    with _progress() as progress:
        task = progress.add_task("reading photos", total=sum(1 for p in products if p.get("image")))
        try:
            fitted = fit_photo_reader(image_space, products, root, progress=lambda n: progress.advance(task, n),
                                      source=f"{Path(catalogue).name}{selection}")
        except (SearchError, ValueError) as exc:
            _fail(f"{catalogue}: {exc}")
    fitted.reader.save(out_file)
    for line in fitted.unreadable[:5]:
        console.print(f"[yellow]left out[/] {line}")
    if len(fitted.unreadable) > 5:
        console.print(f"[yellow]left out {len(fitted.unreadable) - 5:,} more unreadable photos[/]")
    counts = ", ".join(f"{facet} {len(values)}" for facet, values in zip(fitted.reader.facets, fitted.reader.values))
    console.print(f"fitted on {fitted.photos:,} photos of {image_space.model_id} (values per facet: {counts}): {out_file}")


def _evaluation_searcher(ctx, catalogue: Path, variant: str, out_dir: Path, store_kind: str, progress: Progress):
    """The test split indexed (once) through the worker's pipeline, and a searcher over it.

    ``embedded``: a SQLite file in ``out_dir`` named by variant and layout; ``elasticsearch``:
    the alias ``<es_alias>-eval-<variant>`` on the configured cluster (``HYBRID_SEARCH_ES_URL``)."""
    import hashlib
    from dataclasses import replace

    from evaluation.harness import index_test_split
    from hybrid_core.images import ImageLimits
    from indexer.pipeline import IndexingRuntime
    from query_builder.searcher import HybridSearcher

    settings = _settings(ctx)
    layout = settings.layout()
    text_space, image_space = settings.embedding_spaces()
    if store_kind == "elasticsearch":
        from query_builder.es_searcher import ElasticsearchHybridSearcher

        es_settings = replace(settings, store="elasticsearch", es_alias=f"{settings.es_alias}-eval-{variant}", es_refresh="wait_for")
        store = es_settings.open_store()
        store.ensure_index()
        searcher = ElasticsearchHybridSearcher(store, layout, text_space, image_space, mode="auto", vector_synonyms=settings.vector_synonyms)
    else:
        from hybrid_core.stores.embedded import EmbeddedStore

        tag = hashlib.sha256(json.dumps(layout.signature(), sort_keys=True).encode()).hexdigest()[:8]
        store = EmbeddedStore(out_dir / f"test-{variant}-{tag}.sqlite", layout)
        searcher = HybridSearcher(store, layout, text_space, image_space, vector_synonyms=settings.vector_synonyms)
    runtime = IndexingRuntime(store, layout, text_space, image_space, ImageLimits())
    task = progress.add_task(f"indexing test split ({variant}, {store_kind})", total=None)
    count = index_test_split(catalogue, store, runtime, variant, progress=lambda n: progress.advance(task, n))
    progress.update(task, total=count, completed=count)  # finished: its clock stops (a reused index shows 0 s, not the tuning's time)
    return store, searcher, image_space


def _evaluation_inputs(out_dir: str, catalogue: str, queries: str) -> tuple[Path, Path, list[dict[str, Any]]]:
    """The output folder (created), the catalogue path and the queries, for eval and tune."""
    from evaluation.harness import load_queries

    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    return out_path, Path(catalogue), load_queries(queries)


_EVAL_OPTIONS = [
    click.option("--queries", type=click.Path(exists=True, dir_okay=False), required=True),
    click.option("--catalogue", type=click.Path(exists=True, dir_okay=False), required=True),
    click.option("--variant", type=click.Choice(["full", "sparse"]), default="full", show_default=True),
    click.option("--store", "store_kind", type=click.Choice(["embedded", "elasticsearch"]), default="embedded", show_default=True),
    click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Index (embedded), results."),
]


def _eval_options(command):
    for option in reversed(_EVAL_OPTIONS):
        command = option(command)
    return command


def _shipped_profile(variant: str, settings: Settings) -> str | None:
    """The profile `scripts/evaluate.sh` tuned on the dev queries for this variant, if it was tuned with
    the models configured now (else its weights would belong to other vectors)."""
    import evaluation

    path = Path(evaluation.__file__).parent / "profiles" / f"fusion-profile-{variant}.json"
    if not path.exists():
        return None
    models = json.loads(path.read_text()).get("notes", {}).get("models")
    return str(path) if models == {v.name: v.model_id for v in settings.layout().vector_fields} else None


@cli.command("eval")
@_eval_options
@click.option("--fusion-profile", type=click.Path(exists=True, dir_okay=False),
              help="Add the tuned strategies (from `tune`; default: the profile shipped in evaluation/profiles for these models).")
@click.option("--reworded", is_flag=True,
              help="Run the text queries reworded once each (evaluation/reword.py: synonyms and inflections that keep what "
                   "they are judged on), to see which strategies depend on the exact wording.")
@click.pass_context
def eval_command(ctx, queries, catalogue, variant, store_kind, out_dir, fusion_profile, reworded) -> None:
    """Index the test split (once) and run every strategy on every query kind (protocol: ../shared/eval).

    Writes results-<variant>.json and precision-<variant>.png to --out (with --reworded:
    results-<variant>-reworded.json and precision-<variant>-reworded.png)."""
    from collections import Counter

    from evaluation.harness import (DEPTH, STRATEGIES, attribute_oracle_recall, caption_accuracy, cosine_spread, markdown_table, own_photo_misses,
                                    own_photo_ranks, query_kind, run_strategies, split_image_vectors, with_tuned)
    from evaluation.plot import precision_plot
    from query_builder.profile import FusionProfile

    settings = _settings(ctx)
    profile_path = fusion_profile or settings.fusion_profile or _shipped_profile(variant, settings)
    try:
        profile = FusionProfile.load(profile_path) if profile_path else None
    except SearchError as exc:
        _fail(str(exc))
    if profile_path:
        console.print(f"tuned strategies from {profile_path}")
    out_path, catalogue_path, query_list = _evaluation_inputs(out_dir, catalogue, queries)
    if reworded:
        from evaluation.reword import reword_queries

        query_list = reword_queries(query_list)
        if not query_list:
            _fail(f"{queries}: no query has text to reword")
    name = f"{variant}-reworded" if reworded else variant
    try:
        with _progress() as progress:
            store, searcher, image_space = _evaluation_searcher(ctx, catalogue_path, variant, out_path, store_kind, progress)
            task = progress.add_task("queries x strategies", total=None)
            scores: dict[str, dict[str, dict[str, float]]] = {}
            table = run_strategies(searcher, query_list, catalogue_path.parent, with_tuned(STRATEGIES, profile),
                                   progress=lambda n: progress.advance(task, n), per_query_out=scores)
    except SearchError as exc:
        _fail(str(exc))
    layout = settings.layout()
    results: dict[str, Any] = {"variant": variant, "reworded": reworded, "store": store_kind, "depth": DEPTH, "queries": str(queries),
                               "kinds": table,
                               "counts": dict(Counter(query_kind(q) for q in query_list)),
                               "models": {v.name: v.model_id for v in layout.vector_fields},
                               "synonyms": {"setting": settings.synonyms, "rules": len(layout.synonyms)},
                               "fusion_profile": profile.to_dict() if profile else None,
                               "per_query": {"NDCG@10": scores}}
    if reworded:
        results["reworded_as"] = {q["id"]: q["reworded"] for q in query_list}
    if image_space is not None and not reworded:
        products, images = split_image_vectors(store, catalogue_path)
        ranks, first = own_photo_ranks(image_space, products, images)
        results["own_photo_recall@10"] = float((ranks < 10).mean())
        results["own_photo_oracle@10"] = attribute_oracle_recall(products)
        results["own_photo_misses"] = own_photo_misses(products, ranks, first)
        results["image_cosines"] = cosine_spread(images, [p["title"] for p in products])
        if layout.photo_caption is not None:
            results["photo_caption_accuracy"] = caption_accuracy(image_space, products, images)
    (out_path / f"results-{name}.json").write_text(json.dumps(results, indent=2))
    precision_plot(results, out_path / f"precision-{name}.png")
    columns = ["NDCG@10", "P@10", "P@10 fine", "P@20", "P@20 fine", "P@50", "P@50 fine", "P@100", "P@100 fine", "R@100 fine", "MRR fine", "looks@10"]
    for kind, rows in table.items():
        click.echo(f"\n### {name} / {kind} queries ({results['counts'][kind]})\n")
        click.echo(markdown_table(rows, columns))
    if "own_photo_recall@10" in results:
        click.echo(f"\nown-photo Recall@10 (title -> image, {variant} test split): {results['own_photo_recall@10']:.3f}")
    click.echo(f"\nwritten: {out_path / f'results-{name}.json'}, {out_path / f'precision-{name}.png'}")


@cli.command()
@_eval_options
@click.option("--folds", type=int, default=5, show_default=True, help="Cross-validation folds over the queries.")
@click.option("--profile-out", type=click.Path(dir_okay=False), help="Where to write the profile (default: --out/fusion-profile-<variant>.json).")
@click.option("--no-feedback", is_flag=True, help="Tune the fusion only; do not try pseudo-relevance feedback on top of it.")
@click.pass_context
def tune(ctx, queries, catalogue, variant, store_kind, out_dir, folds, profile_out, no_feedback) -> None:
    """Choose fusion method and per-leg weights per query kind on the dev queries (NDCG@10), estimate how the
    choice generalizes by cross-validation over query folds, and write a fusion profile that `search` and
    `eval` load (--fusion-profile, or fusion_profile / HYBRID_SEARCH_FUSION_PROFILE in the settings). Per kind it
    also tries pseudo-relevance feedback on top of the chosen fusion and keeps it where nested cross-validation says it pays."""
    from evaluation.tuning import tune as run_tuning

    out_path, catalogue_path, query_list = _evaluation_inputs(out_dir, catalogue, queries)
    try:
        with _progress() as progress:
            _, searcher, _ = _evaluation_searcher(ctx, catalogue_path, variant, out_path, store_kind, progress)
            task = progress.add_task("legs per query", total=len(query_list))
            profile, report = run_tuning(searcher, query_list, catalogue_path.parent, folds=folds,
                                         progress=lambda n: progress.advance(task, n), feedback=[] if no_feedback else None)
    except SearchError as exc:
        _fail(str(exc))
    profile.notes["variant"] = variant
    profile.notes["queries"] = str(queries)
    profile.notes["models"] = {v.name: v.model_id for v in _settings(ctx).layout().vector_fields}
    target = Path(profile_out) if profile_out else out_path / f"fusion-profile-{variant}.json"
    profile.save(target)
    table = Table(title=f"tuning ({variant}, NDCG@10, {folds}-fold cross-validation over queries)")
    for column in ("kind", "queries", "best single leg", "default RRF", "tuned (in-sample)", "tuned (cross-validated)", "chosen",
                   "+ feedback (nested CV)", "feedback", "+ term feedback (nested CV)", "term feedback"):
        table.add_column(column)
    for kind, r in report.items():
        chosen = r.best
        weights = ",".join(f"{k}={v:g}" for k, v in chosen.weights.items())
        how = f"{chosen.method} k={chosen.rank_constant}" if chosen.method == "rrf" else f"linear {chosen.normalizer}"
        if chosen.all_terms_boost:
            weights += f" all-words+{chosen.all_terms_boost:g}"
        kept = r.chosen_feedback
        nested = f"{r.feedback['cross_validated']['estimate']:.3f}" if r.feedback else "-"
        feedback = (f"{kept.field} top {kept.depth} q={kept.query_weight:g} w={kept.weight:g}" if kept else "off")
        terms = (r.feedback or {}).get("term_feedback")
        term_nested = f"{terms['cross_validated']['estimate']:.3f}" if terms else "-"
        term_kept = r.chosen_term_feedback
        term_feedback = (f"top {term_kept.depth} share {term_kept.min_share:g} w={term_kept.weight:g}" if term_kept else "off")
        table.add_row(kind, str(r.queries), f"{r.best_single_leg[0]} {r.best_single_leg[1]:.3f}", f"{r.default_rrf:.3f}",
                      f"{r.in_sample:.3f}", f"{r.cross_validated['estimate']:.3f}", f"{how} {weights}", nested, feedback,
                      term_nested, term_feedback)
    out.print(table)
    out.print(f"fusion profile: {target}")


@cli.command("eval-report")
@click.option("--results", "results_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="A folder with results-full.json and/or results-sparse.json (and fusion-profile-*.json).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="docs/evaluation.md", show_default=True)
def eval_report(results_dir, out_file) -> None:
    """Write docs/evaluation.md from the eval and tune outputs (tables for both variants and every query kind)."""
    from evaluation.report import write_report

    path = write_report(Path(results_dir), Path(out_file))
    out.print(f"written: {path}")


@cli.command("kibana-objects")
@click.pass_context
def kibana_objects(ctx) -> None:
    """Print the Kibana saved objects (NDJSON) for the configured layout."""
    from hybrid_core import kibana

    settings = _settings(ctx)
    click.echo(kibana.saved_objects(settings.layout(), settings.es_alias), nl=False)


@cli.command("sample-catalogue")
@click.argument("out_dir", type=click.Path(file_okay=False))
def sample_catalogue(out_dir: str) -> None:
    """Write the project's small synthetic demo catalogue (48 products with drawn photos)."""
    from hybrid_core.sample_catalogue import write_sample_catalogue

    path = write_sample_catalogue(out_dir)
    out.print(str(path))


def main() -> Any:  # pragma: no cover
    return cli()
