"""The `crossrec` command line: run an experiment from YAML, or the demo on movielens-small."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crossrec.errors import CrossrecError

if TYPE_CHECKING:
    from crossrec.experiment import ExperimentResult
    from crossrec.report.summary import RunSummary
    from crossrec.serve.state import ServingState

# Spinning OpenMP workers slow torch several-fold when anything else shares the cores; waiting
# passively costs little on an idle machine. Must be set before torch loads (it loads lazily below).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(highlight=False, width=140)

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"


def _print_table(summary: RunSummary) -> None:
    k = summary.protocol.ks[-1]
    table = Table(title=f"{summary.name}: test metrics @{k}, mean ± std over seeds")
    metrics = ("recall", "ndcg", "precision", "f1", "map", "hit", "mrr", "coverage")
    table.add_column("model")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("fit s", justify="right")
    for label, model in summary.models.items():
        cells = []
        for m in metrics:
            stat = model.test.get(f"{m}@{k}")
            std = f"±{stat.std:.3f}".replace("0.", ".") if stat and stat.n > 1 else ""
            cells.append("–" if stat is None else f"{stat.mean:.4f}{std}")
        table.add_row(label, *cells, f"{model.fit_seconds.mean:.1f}")
    console.print(table)
    if summary.significance_sentence:
        console.print(summary.significance_sentence)


def _show(result: ExperimentResult) -> None:
    """A finished run: its table, its paired test and where its bundle is."""
    _print_table(result.summary)
    if result.bundle_dir is not None:
        console.print(f"bundle: {result.bundle_dir}")


def _fail(exc: BaseException) -> typer.Exit:
    """One line, whatever its length, and the message verbatim: '[...]' in it is text, not Rich markup."""
    console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(code=2)


def _run(
    config: Path | str | None,
    overrides: list[str],
    quiet: bool,
    resume: Path | None = None,
    ray_address: str | None = None,
) -> None:
    from crossrec.experiment import resume_experiment, run_experiment
    from crossrec.experiment.executor import LocalExecutor, RayExecutor

    executor = LocalExecutor() if ray_address is None else RayExecutor(ray_address)
    try:
        if resume is not None:
            if overrides:
                raise CrossrecError("--resume continues a run from its own config: drop --set")
            result = resume_experiment(resume, quiet=quiet, executor=executor)
        else:
            result = run_experiment(config, overrides, quiet=quiet, executor=executor)  # type: ignore[arg-type]
    except CrossrecError as exc:
        raise _fail(exc) from None
    _show(result)


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config value: key.path=value (repeatable)")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue an interrupted run from its folder (RUN_DIR)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    ray: Annotated[
        str | None,
        typer.Option(help="run the trials and fits as tasks on this Ray cluster (ADDRESS, or 'auto')"),
    ] = None,
) -> None:
    """Run dataset -> split -> models -> evaluation, writing runs/<name>/ with report.md and a bundle."""
    if (config is None) == (resume is None):
        raise _fail(CrossrecError("give an experiment YAML, or --resume RUN_DIR"))
    _run(config, set_ or [], quiet, resume, ray)


@app.command()
def encode(
    config: Annotated[Path, typer.Argument(help="experiment YAML with an `encode` section")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config value: key.path=value (repeatable)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    ray: Annotated[
        str | None,
        typer.Option(help="run the encoders on this Ray cluster (ADDRESS, or 'auto')"),
    ] = None,
    ray_actors: Annotated[
        int | None, typer.Option(min=1, help="with --ray: encoder actors per modality (default: one per CPU)")
    ] = None,
) -> None:
    """Encode a dataset's item content into the embedding cache (resumable; re-runs reuse the cache).
    With --ray the networks run on a Ray cluster through Ray Data; the cache is the same."""
    from crossrec.config import load_config
    from crossrec.data.loaders import load_dataset
    from crossrec.experiment import encode_items

    try:
        cfg = load_config(config, set_ or [])
        dataset = load_dataset(cfg.dataset.format, cfg.dataset.path, **cfg.dataset.options)
        result = encode_items(cfg, dataset, quiet=quiet, ray_address=ray, ray_actors=ray_actors)
    except CrossrecError as exc:
        raise _fail(exc) from None
    assert cfg.encode is not None
    report_path = result.report.save(Path(cfg.encode.cache_dir) / f"ingest_report-{cfg.name}.json")
    console.print(result.report.summary())
    for name, matrix in result.vectors.items():
        console.print(
            f"{name}: {int(result.present[name].sum()):,} of {len(matrix):,} items, {matrix.shape[1]}-d"
        )
    console.print(f"ingest report: {report_path}")


# The explainer options `serve` and `explain` share.
LlmOption = Annotated[
    str,
    typer.Option(
        "--llm",
        help="who writes explanations: template (default), smollm2 (the pinned GGUF, needs "
        "llama-cpp-python) or the path of a .gguf file",
    ),
]
LlmUrlOption = Annotated[
    str | None,
    typer.Option("--llm-url", help="an OpenAI-compatible endpoint instead (base URL, e.g. .../v1)"),
]
LlmModelOption = Annotated[str | None, typer.Option("--llm-model", help="the model name at --llm-url")]
LlmKeyEnvOption = Annotated[
    str, typer.Option("--llm-key-env", help="the environment variable holding the endpoint's key")
]
LlmSchemaOption = Annotated[
    str,
    typer.Option(
        "--llm-schema-format",
        help="json_schema (OpenAI, vLLM, llama-server) or json_object (llama-cpp-python)",
    ),
]
LlmCacheOption = Annotated[
    Path | None,
    typer.Option("--llm-cache", help="the durable cache of answers (default: RUN_DIR/explanations.sqlite)"),
]
LlmThreadsOption = Annotated[int, typer.Option("--llm-threads", help="CPU threads of a local model")]
LlmTimeoutOption = Annotated[
    float, typer.Option("--llm-timeout", help="seconds one generation may take before the template answers")
]


def _run_dir(path: Path) -> tuple[Path, Path]:
    """(run folder, bundle folder) of a run folder or its bundle/ folder."""
    bundle_dir = path / "bundle" if (path / "bundle").is_dir() else path
    return bundle_dir.parent, bundle_dir


def _state_after_log(
    run_dir: Path, model: str | None, store: Path | None, *, exact: bool = False
) -> tuple[Path, ServingState]:
    """(run folder, serving state) with a server's event log applied: `store`, else
    RUN_DIR/serve.sqlite when it exists; `exact` scores every item instead of the ANN index."""
    from crossrec.serve.state import ServingState, load_servable
    from crossrec.serve.store import EventStore

    folder, bundle_dir = _run_dir(run_dir)
    bundle = load_servable(bundle_dir, model)
    state = ServingState(bundle, exact_below=sys.maxsize) if exact else ServingState(bundle)
    log_path = store or folder / "serve.sqlite"
    if store is not None or log_path.is_file():
        state.catch_up(EventStore(log_path))
    return folder, state


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (or its bundle/ folder)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(help="model label in the bundle (default: the best servable one by validation)"),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="serve write endpoints without an API key (local use only)")
    ] = False,
    store: Annotated[
        Path | None, typer.Option(help="the durable event log (default: RUN_DIR/serve.sqlite)")
    ] = None,
    llm: LlmOption = "template",
    llm_url: LlmUrlOption = None,
    llm_model: LlmModelOption = None,
    llm_key_env: LlmKeyEnvOption = "OPENAI_API_KEY",
    llm_schema_format: LlmSchemaOption = "json_schema",
    llm_cache: LlmCacheOption = None,
    llm_threads: LlmThreadsOption = 1,
    llm_timeout: LlmTimeoutOption = 10.0,
    llm_nice: Annotated[
        int, typer.Option(help="how much lower the model's CPU priority is than the API's (0: the same)")
    ] = 10,
    explain_queue: Annotated[
        int, typer.Option(help="explanations waiting for the model at most; beyond, the template answers")
    ] = 16,
    explain_wait: Annotated[
        float, typer.Option(help="seconds a request waits for the model's explanation before the template")
    ] = 3.0,
) -> None:
    """Serve a run bundle over HTTP: recommendations, similar items, search, feedback, new items, and
    explanations on request (written off the request path by --llm, the template by default).
    Write endpoints need the key in $CROSSREC_API_KEY unless --no-auth."""
    import uvicorn

    from crossrec.serve.app import create_app
    from crossrec.serve.explanations import build_explainer
    from crossrec.serve.state import ServingState, load_servable
    from crossrec.serve.store import EventStore

    key = os.environ.get("CROSSREC_API_KEY")
    try:
        if key is None and not no_auth:
            raise CrossrecError(
                "set CROSSREC_API_KEY for the write endpoints, or pass --no-auth for local use"
            )
        folder, bundle_dir = _run_dir(run_dir)
        state = ServingState(load_servable(bundle_dir, model))
        log = EventStore(store or folder / "serve.sqlite")
        replayed = state.catch_up(log)
        explainer = build_explainer(
            state,
            llm,
            url=llm_url,
            model=llm_model,
            key_env=llm_key_env,
            schema_format=llm_schema_format,
            cache=llm_cache or folder / "explanations.sqlite",
            threads=llm_threads,
            timeout_s=llm_timeout,
        )
        app_ = create_app(
            state,
            api_key=None if no_auth else key,
            store=log,
            explainer=explainer,
            explain_queue=explain_queue,
            explain_wait_s=explain_wait,
            explain_nice=llm_nice,
        )
    except CrossrecError as exc:
        raise _fail(exc) from None
    writer = explainer.llm.name if explainer.llm is not None else "the template"
    console.print(
        f"serving {state.bundle.label} on http://{host}:{port} ({replayed:,} logged events replayed; "
        f"explanations by {writer})"
    )
    try:
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        app_.state.explanations.close()


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (or its bundle/ folder)")],
    user: Annotated[str, typer.Option("--user", help="the user id")],
    item: Annotated[str, typer.Option("--item", help="the item id")],
    model: Annotated[str | None, typer.Option(help="model label in the bundle (default: as serve)")] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="a server's event log to replay first (default: RUN_DIR/serve.sqlite, if any)"),
    ] = None,
    llm: LlmOption = "template",
    llm_url: LlmUrlOption = None,
    llm_model: LlmModelOption = None,
    llm_key_env: LlmKeyEnvOption = "OPENAI_API_KEY",
    llm_schema_format: LlmSchemaOption = "json_schema",
    llm_cache: LlmCacheOption = None,
    llm_threads: LlmThreadsOption = 2,
    llm_timeout: LlmTimeoutOption = 30.0,
) -> None:
    """Print the facts behind recommending ITEM to USER and the sentence that explains it."""
    from crossrec.serve.explanations import build_explainer, item_about
    from crossrec.serve.facts import recommendation_facts

    try:
        folder, state = _state_after_log(run_dir, model, store)
        facts = recommendation_facts(state, user, item)
        explainer = build_explainer(
            state,
            llm,
            url=llm_url,
            model=llm_model,
            key_env=llm_key_env,
            schema_format=llm_schema_format,
            cache=llm_cache or folder / "explanations.sqlite",
            threads=llm_threads,
            timeout_s=llm_timeout,
        )
    except CrossrecError as exc:
        raise _fail(exc) from None
    try:
        said = explainer.explain(facts, item_about(state, item))
    finally:
        close = getattr(explainer.llm, "close", None)
        if callable(close):
            close()
    _print_facts(facts)
    why = f" ({escape(said.reason)})" if said.reason else ""
    console.print(f"[bold]{escape(said.text)}[/]", soft_wrap=True)
    console.print(f"source: {said.source}{why}; cites {', '.join(said.cites) or 'nothing'}", soft_wrap=True)


def _print_facts(facts: dict) -> None:
    table = Table(
        title=f"why item {escape(str(facts['item_id']))} ({escape(str(facts.get('title')))}) "
        f"for user {escape(str(facts['user_id']))}"
    )
    table.add_column("fact")
    table.add_column("value")
    for name, terms in (facts.get("shared") or {}).items():
        if terms:
            table.add_row(f"shared {name}", escape(", ".join(terms[:8])))
    for modality, nearest in (facts.get("nearest_liked") or {}).items():
        for near in nearest:
            title = escape(str(near.get("title") or near["item_id"]))
            table.add_row(f"liked, close by {modality}", f"{title} ({near['similarity']:.2f})")
    if facts.get("closest_modality"):
        table.add_row("closest in", escape(str(facts["closest_modality"])))
    pop = facts.get("popularity") or {}
    if pop:
        table.add_row(
            "popularity", f"#{pop['rank']:,} of {pop['of']:,} ({pop['interactions']:,} interactions)"
        )
    table.add_row("score", f"{facts['score']:.3f}")
    console.print(table)


@app.command()
def recommend(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (or its bundle/ folder)")],
    out: Annotated[Path, typer.Option(help="the CSV to write: user_id, rank, item_id, score")],
    k: Annotated[int, typer.Option(min=1, help="recommendations per user")] = 20,
    model: Annotated[str | None, typer.Option(help="model label in the bundle (default: as serve)")] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="a server's event log to replay first (default: RUN_DIR/serve.sqlite, if any)"),
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="score every item for every user instead of the ANN index")
    ] = False,
) -> None:
    """Top K for every user, seen items excluded, through the serving index: what the API would
    answer, as one file for a batch job (e-mails, a cache, an offline audit)."""
    from crossrec.serve.export import write_recommendations

    try:
        _, state = _state_after_log(run_dir, model, store, exact=exact)
    except CrossrecError as exc:
        raise _fail(exc) from None
    rows = write_recommendations(state, out, k)
    search = "exact scoring" if state.index.kind == "exact" else f"the {state.index.kind} index"
    console.print(f"wrote {rows:,} recommendations for {len(state.user_ids):,} users to {out} ({search})")


@app.command()
def retrain(
    run_dir: Annotated[Path, typer.Argument(help="the run folder a server was started from")],
    store: Annotated[
        Path | None, typer.Option(help="the server's event log (default: RUN_DIR/serve.sqlite)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="the new run's name (default: <run>-retrained)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config value: key.path=value (repeatable)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Run the same experiment again with the feedback the server logged folded into the data."""
    from crossrec.serve.retrain import retrain as run_retrain

    try:
        result, folded = run_retrain(
            run_dir, store or run_dir / "serve.sqlite", name=name, overrides=set_, quiet=quiet
        )
    except CrossrecError as exc:
        raise _fail(exc) from None
    console.print(
        f"folded in {folded['events']:,} logged events ({folded['new_users']:,} new users; "
        f"{folded['skipped_events_on_new_items']:,} on items added while serving left out)"
    )
    _show(result)


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="movielens-small folder")] = Path(
        "../shared/data/movielens-small"
    ),
    output_dir: Annotated[Path, typer.Option(help="where runs/<name>/ goes")] = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="extra overrides key.path=value")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """A small but real experiment on movielens-small (a few minutes on 2 cores)."""
    overrides = [f"dataset.path={data}", f"output_dir={output_dir}", *(set_ or [])]
    _run(DEMO_CONFIG, overrides, quiet)


if __name__ == "__main__":
    app()
