"""The `reco` command line: thin wrappers around functions of the `reco` package."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer import _click as click  # typer 0.29 vendors click: its Context and exceptions
from typer.core import TyperGroup

from reco.errors import RecoError, RetryableError, StepError
from reco.settings import Settings, get_settings


class _State:
    """What the error report needs to know about this invocation."""

    debug = False
    workdir: Path | None = None
    commits: ClassVar[list[Any]] = []  # gitops commits made by this invocation (pushed by _gitops_checkout)


class _ReportingGroup(TyperGroup):
    """The top-level command group: any failure of a command ends in one line, never a traceback.

    The line says what failed (step, date, file, row, column — whatever the error knows) and where the
    full traceback was written (``<workdir>/logs/``); ``reco --debug …`` prints it to the terminal too.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except Exception as error:
            raise typer.Exit(code=report_failure(error)) from None


app = typer.Typer(
    cls=_ReportingGroup,
    help="reco-articles: article recommendations with a daily, gated pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Bring events and articles into the lake.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run the daily pipeline.", no_args_is_help=True)
app.add_typer(data_app, name="data")
model_app = typer.Typer(help="The model registry: versions, manual promotion, rollback.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(model_app, name="model")
gitops_app = typer.Typer(help="Releases as commits to the GitOps overlays (production).", no_args_is_help=True)
app.add_typer(gitops_app, name="gitops")
analysis_app = typer.Typer(help="The canary's statistical CTR verdict (Argo Rollouts analysis).", no_args_is_help=True)
app.add_typer(analysis_app, name="analysis")

console = Console()
# Tables of metrics are wide; piped output (CI logs, `| tee`) would otherwise squeeze them to 80 columns.
console.width = max(console.width, 130)
err_console = Console(stderr=True)

WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        "--workdir", "-w", help="Workdir holding the lake, features, MLflow store and runs [env RECO_WORKDIR]."
    ),
]
CatchUpOpt = Annotated[
    bool,
    typer.Option(
        "--catch-up/--no-catch-up",
        help="First ingest and featurize the missing days the steps read (default); --no-catch-up fails instead.",
    ),
]
DateOpt = Annotated[
    dt.datetime | None,
    typer.Option("--date", formats=["%Y-%m-%d"], help="Run date (UTC); default: the latest day with events."),
]


@app.callback()
def _quiet_libraries(
    debug: Annotated[bool, typer.Option("--debug", help="On failure, print the full traceback here too.")] = False,
) -> None:
    # Third-party deprecation notices (ibis inside Feast, Evidently, Litestar) are noise to a CLI user,
    # not their problem; warnings raised by reco itself still show.
    # Some libraries re-enable DeprecationWarning on import, so filters set here would not last:
    # decide at display time instead, keeping only what reco itself warns about.
    show = warnings.showwarning

    def show_own(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if f"{os.sep}reco{os.sep}" in filename and "site-packages" not in filename:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_own
    _State.debug = debug
    _State.workdir = None
    # MLflow narrates every log_model (uv detection, cloudpickle and pip notices, artifact progress bars);
    # it sets its loggers' level when first imported, from MLFLOW_LOGGING_LEVEL: keep its errors only.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def settings_for(workdir: Path | None) -> Settings:
    base = get_settings()
    settings = base.model_copy(update={"workdir": workdir.resolve()}) if workdir else base
    _State.workdir = settings.workdir
    return settings


# Exit codes, which Argo's retry strategy reads (workflows/): a clear error of the input or the data fails
# the same way on every attempt and is not retried; anything else (a server down, a pod evicted, a bug)
# may pass on a retry.
EXIT_CLEAR_ERROR = 1
EXIT_RETRYABLE = 75  # EX_TEMPFAIL of sysexits.h


def fail(error: Exception) -> None:
    raise typer.Exit(code=report_failure(error))


def write_failure_log(error: BaseException) -> Path | None:
    """The traceback of ``error`` in ``<workdir>/logs/reco-<UTC time>.log``.

    In the system's temp folder instead when the workdir does not exist (a failed first import leaves
    no workdir behind) or cannot be written.
    """
    text = f"reco {' '.join(sys.argv[1:])}\n{dt.datetime.now(dt.UTC).isoformat()}\n\n" + "".join(
        traceback.format_exception(error)
    )
    name = f"reco-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.getpid()}.log"
    workdir = _State.workdir or get_settings().workdir
    folders = [workdir / "logs"] if workdir.is_dir() else []
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def report_failure(error: BaseException) -> int:
    """One line on stderr: what failed, what to do, and where the traceback is; returns the exit code."""
    log_path = write_failure_log(error)
    where = f"traceback in {log_path}" if log_path else "traceback could not be written"
    step_error = error if isinstance(error, StepError) else None
    unexpected = step_error.unexpected if step_error else not isinstance(error, RecoError)
    retryable = step_error.retryable if step_error else unexpected or isinstance(error, RetryableError)
    if _State.debug:
        err_console.print("".join(traceback.format_exception(error)), markup=False, highlight=False)
    if unexpected:
        message = error if step_error else f"{type(error).__name__}: {error}"
        line = f"{message} — an unexpected failure of reco, not of your data: {where}; please report it with that file"
    elif retryable:
        line = f"{error} — a temporary failure of a service reco uses; retrying may help ({where})"
    else:
        line = f"{error} ({where})"
    err_console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    return EXIT_RETRYABLE if retryable else EXIT_CLEAR_ERROR


def print_mapping(title: str, mapping: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    for key, value in mapping.items():
        table.add_row(str(key), str(value))
    console.print(table)


@data_app.command("generate")
def data_generate(
    users: Annotated[int, typer.Option(help="Number of users.")] = 5_000,
    articles: Annotated[int, typer.Option(help="Number of articles published over the period.")] = 2_000,
    days: Annotated[int, typer.Option(help="Number of days of traffic.")] = 14,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 7,
    end: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of traffic (UTC); default today.")
    ] = None,
    drift_day: Annotated[
        int | None, typer.Option("--drift-day", help="1-based day index from which preferences shift.")
    ] = None,
    catalog: Annotated[
        str,
        typer.Option(
            help="news: articles live for hours to days, slates with impressions; "
            "evergreen: items live for months, clicks and reads only (a blog, an editorial shop)."
        ),
    ] = "news",
    articles_file: Annotated[
        bool,
        typer.Option(
            "--article-metadata/--no-articles",
            help="Write article metadata; without it the articles are derived from the log, as import-events does.",
        ),
    ] = True,
    workdir: WorkdirOpt = None,
) -> None:
    """Write synthetic traffic (news: impressions, clicks, reads; evergreen: clicks, reads) to the bronze lake."""
    from reco.generate import CATALOGS, generate

    if catalog not in CATALOGS:
        raise typer.BadParameter(f"one of {', '.join(CATALOGS)}", param_hint="--catalog")
    report = generate(
        settings_for(workdir),
        users=users,
        articles=articles,
        days=days,
        seed=seed,
        end=end.date() if end else None,
        drift_day=drift_day,
        catalog="evergreen" if catalog == "evergreen" else "news",
        write_articles=articles_file,
    )
    print_mapping("generated", dict(vars(report)))


@data_app.command("import-mind")
def data_import_mind(
    directory: Annotated[Path, typer.Argument(help="Folder with behaviors.tsv and news.tsv (MIND format).")],
    workdir: WorkdirOpt = None,
) -> None:
    """Import a MIND-format dataset (behaviors.tsv + news.tsv) into events and articles."""
    from reco.importers import import_mind

    report = import_mind(settings_for(workdir), directory)
    print_mapping("imported (MIND)", dict(vars(report)))


@data_app.command("import-events")
def data_import_events(
    events_file: Annotated[
        Path, typer.Argument(help="CSV or Parquet click log: user_id, article_id, ts [, event_type, dwell_ms].")
    ],
    articles: Annotated[Path | None, typer.Option("--articles", help="CSV or Parquet of article metadata.")] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Import a site's own click log (and optionally its article metadata)."""
    from reco.importers import import_events
    from reco.schemas import UNKNOWN_CATEGORY

    report = import_events(settings_for(workdir), events_file, articles)
    print_mapping("imported (events)", dict(vars(report)))
    if report.articles_derived:
        source = "described by no row of the article file" if articles else "of the log (no --articles given)"
        console.print(
            f"{report.articles_derived:,} articles {source} were derived from the log itself: published_at = their "
            f"first event, category {UNKNOWN_CATEGORY!r} (no category), title = their id"
        )


def _parse_steps(steps: str | None) -> list[str] | None:
    return [s.strip() for s in steps.split(",") if s.strip()] if steps else None


@pipeline_app.command("run")
def pipeline_run(
    date: DateOpt = None,
    steps: Annotated[str | None, typer.Option(help="Comma-separated subset of steps, e.g. ingest,features.")] = None,
    catch_up: CatchUpOpt = True,
    workdir: WorkdirOpt = None,
) -> None:
    """Run the daily pipeline for one date, in step order, with a progress display."""
    from reco.progress import run_with_progress

    day = date.date() if date else None
    ctx = run_with_progress(settings_for(workdir), day, _parse_steps(steps), console, catch_up=catch_up)
    console.print(f"summary: {ctx.summary_path}")


@pipeline_app.command("backfill")
def pipeline_backfill(
    start: Annotated[dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First date (UTC).")],
    end: Annotated[dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last date (UTC), inclusive.")],
    steps: Annotated[str | None, typer.Option(help="Comma-separated subset of steps.")] = None,
    catch_up: CatchUpOpt = True,
    workdir: WorkdirOpt = None,
) -> None:
    """Run the pipeline for every date of a range, oldest first (re-running a date is idempotent)."""
    from reco.progress import run_with_progress

    settings = settings_for(workdir)
    if end < start:
        fail(RecoError(f"--from {start.date()} is after --to {end.date()}"))
    day = start.date()
    while day <= end.date():
        run_with_progress(settings, day, _parse_steps(steps), console, catch_up=catch_up)
        day += dt.timedelta(days=1)


@pipeline_app.command("step")
def pipeline_step(
    name: Annotated[str, typer.Argument(help="Step name (see `reco pipeline steps`).")],
    date: Annotated[dt.datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Run date (UTC).")],
    catch_up: CatchUpOpt = True,
    retrain_window: Annotated[
        int, typer.Option(min=0, help="A drift-triggered retraining run with this training window (days); 0: no.")
    ] = 0,
    outputs: Annotated[
        Path | None, typer.Option(help="Folder to write the step's exported summary values to, one file each (Argo).")
    ] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Run one step alone (what each Argo pod runs)."""
    from reco.pipeline import run_single_step, select_steps, step_outputs

    ctx = run_single_step(
        settings_for(workdir), name, date.date(), catch_up=catch_up, retrain_window_days=retrain_window
    )
    if outputs is not None:
        outputs.mkdir(parents=True, exist_ok=True)
        values = step_outputs(ctx.summary)
        for key in select_steps([name])[0].outputs:
            if key in values:
                (outputs / key).write_text(values[key])
    console.print(f"{name}: {ctx.summary['steps'][name]:.2f}s, summary {ctx.summary_path}")


@pipeline_app.command("resolve-date")
def pipeline_resolve_date(
    date: Annotated[str, typer.Option(help="The run date asked for (YYYY-MM-DD); empty: the day before --created.")],
    created: Annotated[str, typer.Option(help="When the workflow was created (RFC 3339, UTC).")],
    out: Annotated[Path | None, typer.Option(help="Also write the date to this file (an Argo output).")] = None,
) -> None:
    """Print the run date of a scheduled workflow: the date given, or yesterday as of its creation."""
    from reco.pipeline import resolve_run_date

    day = resolve_run_date(date, created)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(day.isoformat())
    console.print(day.isoformat())


@pipeline_app.command("notify-exit")
def pipeline_notify_exit(
    workflow: Annotated[str, typer.Option(help="Workflow name.")],
    status: Annotated[str, typer.Option(help="Workflow status (Succeeded, Failed, Error).")],
    failures: Annotated[str, typer.Option(help="Argo's {{workflow.failures}} JSON.")] = "",
    date: Annotated[str, typer.Option(help="Run date.")] = "",
    link: Annotated[str, typer.Option(help="Link to the workflow in the Argo UI.")] = "",
) -> None:
    """Post a failed workflow's summary (failed step, date, link) to the alert webhook (Argo onExit)."""
    from reco.orchestration import failure_alert

    if status == "Succeeded":
        console.print(f"{workflow} succeeded: nothing to report")
        return
    console.print(f"alert: {failure_alert(get_settings(), workflow, status, failures, date, link)}")


@pipeline_app.command("steps")
def pipeline_steps() -> None:
    """List the steps of the daily DAG, in order."""
    from reco.pipeline import STEPS

    for step in STEPS:
        console.print(f"[bold]{step.name}[/]  {step.description}")


@app.command("runs")
def runs(workdir: WorkdirOpt = None) -> None:
    """Show every daily run of the workdir: gate decisions, the model against its strongest heuristic
    with the interval of the difference, every baseline of the latest run, drift."""
    from reco.report import load_runs, metrics_table, runs_table, versus

    history = load_runs(settings_for(workdir))
    if not history:
        fail(RecoError("no runs yet: `reco pipeline run` first"))
    console.print(runs_table(history))
    console.print(metrics_table(history[-1]))
    evaluated = [run for run in history if (run.get("metrics") or {}).get("model")]
    if evaluated:
        last = evaluated[-1]
        console.print(f"{last.get('date', '?')}: model NDCG@10 {versus(last)}", markup=False, highlight=False)


@model_app.command("list")
def model_list(workdir: WorkdirOpt = None) -> None:
    """Registered versions, newest first, with aliases and the gate's decision."""
    from reco.registry import list_versions

    versions = list_versions(settings_for(workdir))
    table = Table(title="reco-articles versions")
    for column in ("version", "aliases", "day", "gate", "replaced", "reason"):
        table.add_column(column)
    for v in versions:
        table.add_row(v.version, ",".join(v.aliases), v.day, v.decision, v.champion_before, v.reason)
    console.print(table)


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the version).")] = "operator decision",
    workdir: WorkdirOpt = None,
) -> None:
    """Make VERSION the champion by hand, overriding the gate (recorded, and reversible by rollback)."""
    from reco.registry import promote

    before, after = promote(settings_for(workdir), version, reason=reason)
    console.print(f"champion: {before or 'none'} -> {after}")


@model_app.command("rollback")
def model_rollback(workdir: WorkdirOpt = None) -> None:
    """Point champion back at the version the current champion replaced."""
    from reco.registry import rollback

    current, previous = rollback(settings_for(workdir))
    console.print(f"champion rolled back: {current} -> {previous}")


@model_app.command("oracle-gap")
def model_oracle_gap(
    date: Annotated[dt.datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Test day (UTC) of a daily run.")],
    version: Annotated[str | None, typer.Option(help="Registry version [default: the one that day's run trained].")] = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Where the model's gap to the ceiling lies, on a generated world: NDCG@10 of the oracle with parts of
    the generator's click model removed, beside the model and the strongest heuristic (``reco.oracle_gap``)."""
    from reco.oracle_gap import oracle_gap

    rows = oracle_gap(settings_for(workdir), date.date(), version)
    table = Table(title=f"where the gap is: session NDCG@10 on {date.date()}")
    table.add_column("ranking")
    table.add_column("ndcg@10", justify="right")
    for row in rows:
        table.add_row(row.name, f"{row.ndcg:.4f}")
    console.print(table)


RepoOpt = Annotated[
    str,
    typer.Option(
        "--repo",
        help="Git checkout holding gitops/overlays/, or a URL to clone (then pushed) [env RECO_GITOPS_REPO; default .].",
    ),
]
PushOpt = Annotated[bool, typer.Option("--push/--no-push", help="Push the commit's branch to origin (always for a URL).")]


@contextlib.contextmanager
def _gitops_checkout(repo: str, push_it: bool) -> Iterator[Path]:
    """The working tree for ``repo`` (default: RECO_GITOPS_REPO, else the current folder), pushing what the block
    committed (``_State.commits``) when asked or when the tree is a fresh clone of a URL."""
    from reco.gitops import checkout, push

    settings = get_settings()
    _State.commits = []
    with checkout(repo or settings.gitops_repo or ".", token=settings.gitops_token) as (tree, remote):
        yield tree
        if push_it or remote:
            for commit in _State.commits:
                push(tree, commit.branch)
                console.print(f"pushed {commit.branch}")
EnvOpt = Annotated[str, typer.Option("--env", help="Environment: an overlay with a release.yaml (staging, prod).")]


def _print_commit(commit: Any) -> None:
    _State.commits.append(commit)
    where = (
        f"on branch {commit.branch} (open a pull request)"
        if commit.branch.startswith("release/")
        else f"on {commit.branch}"
    )
    console.print(
        f"committed {commit.sha[:10]} {where}: model version {commit.before.model_version} -> "
        f"{commit.after.model_version}, image {commit.before.image_tag} -> {commit.after.image_tag}"
    )


@gitops_app.command("promote")
def gitops_promote(
    env: EnvOpt,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="Registry version to release (default: unchanged, with --image).")
    ] = None,
    image: Annotated[str | None, typer.Option("--image", help="Image tag to release (default: unchanged).")] = None,
    reason: Annotated[str, typer.Option(help="Why (default: the gate's reason recorded on the version).")] = "",
    run_date: Annotated[str, typer.Option(help="Run date (default: recorded on the version).")] = "",
    repo: RepoOpt = "",
    push_it: PushOpt = False,
    workdir: WorkdirOpt = None,
) -> None:
    """One commit to ENV's release file; for prod on a new branch, ready for a pull request.

    Without --model-version it releases --image with the model version already released (what the release
    workflow does after a build); nothing is asked of the registry then."""
    from reco.gitops import promote
    from reco.registry import version_gate

    if model_version is None and image is None:
        fail(RecoError("nothing to release: give --model-version, --image or both"))
    if model_version is not None and (not reason or not run_date):
        recorded_reason, recorded_day = version_gate(settings_for(workdir), model_version)
        reason, run_date = reason or recorded_reason, run_date or recorded_day
    with _gitops_checkout(repo, push_it) as tree:
        _print_commit(promote(tree, env, model_version, image_tag=image, reason=reason, run_date=run_date))


@gitops_app.command("revert")
def gitops_revert(
    env: EnvOpt,
    why: Annotated[str, typer.Option(help="Why (recorded in the commit message).")] = "",
    repo: RepoOpt = "",
    push_it: PushOpt = False,
) -> None:
    """One commit returning ENV's release file to the release before its latest change."""
    from reco.gitops import revert

    with _gitops_checkout(repo, push_it) as tree:
        _print_commit(revert(tree, env, why=why))


@gitops_app.command("abort")
def gitops_abort(
    env: EnvOpt,
    model_version: Annotated[str, typer.Option("--model-version", help="The version whose canary was aborted.")],
    repo: RepoOpt = "",
    push_it: PushOpt = False,
    workdir: WorkdirOpt = None,
) -> None:
    """After an aborted canary: revert the release in git and tell the registry (canary=aborted, champion back)."""
    from reco.gitops import abort

    with _gitops_checkout(repo, push_it) as tree:
        done = abort(settings_for(workdir), tree, env, model_version)
        if done.revert:
            _print_commit(done.revert)
        else:
            console.print(f"git: {env} no longer releases version {model_version}; no revert needed")
    console.print(f"registry: {done.tagged}; {done.champion}")


MarginOpt = Annotated[float, typer.Option(help="Allowed relative CTR loss before a canary counts as worse.")]
ThresholdOpt = Annotated[float, typer.Option(help="Posterior probability needed for a verdict.")]
MinImpressionsOpt = Annotated[int, typer.Option(help="Below this many impressions per variant: Inconclusive.")]
PrometheusOpt = Annotated[str | None, typer.Option("--prometheus", help="Prometheus URL [env RECO_PROMETHEUS_URL].")]


@analysis_app.command("canary")
def analysis_canary(
    canary_version: Annotated[str, typer.Option("--canary-version", help="Model version the canary serves.")],
    window: Annotated[str, typer.Option(help="Prometheus range to count over, e.g. 10m.")] = "10m",
    margin: MarginOpt = 0.05,
    threshold: ThresholdOpt = 0.95,
    min_impressions: MinImpressionsOpt = 2000,
    prometheus: PrometheusOpt = None,
) -> None:
    """Read canary and stable clicks/impressions from Prometheus and print the verdict (JSON)."""
    import json

    from reco.analysis import Policy, judge_canary

    url = prometheus or get_settings().prometheus_url
    verdict = judge_canary(url, canary_version, window, Policy(margin, threshold, min_impressions))
    console.print_json(json.dumps(verdict.to_json()))


@analysis_app.command("serve")
def analysis_serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Bind address.")] = "0.0.0.0",
    prometheus: PrometheusOpt = None,
) -> None:
    """The judge Argo Rollouts' Web metric asks: GET /v1/canary?canary_version=V -> the verdict as JSON."""
    from reco.analysis import make_server

    url = prometheus or get_settings().prometheus_url
    server = make_server(url, host, port)
    console.print(f"canary judge on {host}:{server.server_address[1]}, reading {url}")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@app.command("recommend")
def recommend(
    user_id: Annotated[str, typer.Argument(help="User to recommend for (unknown users get the cold-start page).")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Number of articles.")] = 10,
    category: Annotated[str | None, typer.Option(help="Cold-start category hint.")] = None,
    at: Annotated[
        dt.datetime | None,
        typer.Option("--at", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="Serving time (UTC); default now."),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to load.")] = "champion",
    workdir: WorkdirOpt = None,
) -> None:
    """Print recommendations with their reasons from the registered model, without the service."""
    from reco.model import recommend_for_user

    now = at.replace(tzinfo=dt.UTC) if at else None
    items, version = recommend_for_user(settings_for(workdir), user_id, k, now=now, category=category, alias=alias)
    table = Table(title=f"{user_id}: {len(items)} articles from reco-articles@{alias} (version {version})")
    for column in ("#", "article_id", "score", "reason"):
        table.add_column(column)
    for position, item in enumerate(items, start=1):
        table.add_row(str(position), item.article_id, f"{item.score:.4f}", item.reason)
    console.print(table)


@app.command("demo")
def demo(
    users: Annotated[int, typer.Option(help="Number of users.")] = 5_000,
    articles: Annotated[int, typer.Option(help="Number of articles.")] = 2_000,
    days: Annotated[int, typer.Option(min=6, help="Days of traffic, ending today (UTC).")] = 14,
    full_runs: Annotated[int, typer.Option(min=2, help="Last days that get the whole daily pipeline.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    workdir: WorkdirOpt = None,
) -> None:
    """Generate traffic, run the full pipeline on the last days, show the results.

    The first full run catches up the early days (silver and features of the training window and
    of the drift reference); the next runs show the gate against a champion.
    """
    from reco.generate import generate
    from reco.progress import run_with_progress
    from reco.report import load_runs, metrics_table, runs_table

    settings = settings_for(workdir)
    report = generate(settings, users=users, articles=articles, days=days, seed=seed)
    console.print(f"[bold]generated[/] {report.events:,} events ({report.start} .. {report.end}) in {settings.workdir}")
    last = dt.date.fromisoformat(report.end)
    for back in range(full_runs - 1, -1, -1):
        run_with_progress(settings, last - dt.timedelta(days=back), None, console)
    history = [run for run in load_runs(settings) if "gate" in run]
    console.print(runs_table(history))
    console.print(metrics_table(history[-1]))
    for run in history:
        console.print(f"{run['date']}: gate {run['gate']['decision']} — {run['gate']['reason']}")


@app.command("smoke")
def smoke(
    url: Annotated[str, typer.Option("--url", help="Base URL of the recommend service, e.g. http://127.0.0.1:8000.")],
    expect_version: Annotated[
        str | None, typer.Option("--expect-version", help="Model version that must serve (default: --env's release).")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Read the expected version from gitops/overlays/ENV/release.yaml.")
    ] = None,
    repo: Annotated[Path, typer.Option("--repo", help="Checkout holding gitops/ (with --env).")] = Path("."),
    user: Annotated[
        str | None,
        typer.Option("--user", help="A user the model knows (default: the most active one of --workdir's newest snapshot)."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per HTTP request, and to see the event counted.")] = 10.0,
    workdir: WorkdirOpt = None,
) -> None:
    """Check a deployed service: /readyz, a known and an unknown user's lists, one event round trip, the model version.

    Prints one line per check; exits 1 with one `error:` line per failed check."""
    from reco.gitops import read_release, release_path
    from reco.smoke import run_smoke

    if expect_version is None and env is not None:
        expect_version = read_release(release_path(repo, env).read_text()).model_version
    if user is None:
        user = _most_active_user(settings_for(workdir))
    checks = run_smoke(url, user=user, expected_version=expect_version, timeout_s=timeout, wait_s=timeout)
    for check in checks:
        console.print(check.line(), markup=False, highlight=False)
    failed = [c for c in checks if c.failed]
    for check in failed:
        err_console.print(f"error: smoke {check.name}: {check.detail}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(code=EXIT_CLEAR_ERROR)


def _most_active_user(settings: Settings) -> str | None:
    """The user with the most clicks in the last 7 days of the newest user snapshot, if there is one."""
    import pyarrow.compute as pc

    from reco.features import USER_TABLE, feature_table_dir
    from reco.lake import list_dates, read_partition

    folder = feature_table_dir(settings, USER_TABLE)
    days = list_dates(folder)
    if not days:
        return None
    table = read_partition(folder, days[-1])
    if table.num_rows == 0:
        return None
    return str(table["user_id"][pc.index(table["clicks_7d"], pc.max(table["clicks_7d"])).as_py()])


@app.command(
    "workflows",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def workflows(ctx: typer.Context) -> None:
    """The daily pipeline on Argo Workflows: render | check | backfill (see `reco workflows --help`)."""
    # workflows/ imports reco, never the reverse: hand over to its own command line by module name.
    os.execv(sys.executable, [sys.executable, "-m", "workflows", *ctx.args])


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    workdir: WorkdirOpt = None,
) -> None:
    """Run the recommend service (Litestar) on the champion model of the workdir."""
    # The service imports reco, never the reverse: start it by module name, replacing this process
    # so signals (Ctrl-C, SIGTERM from Kubernetes) reach the server and its graceful drain directly.
    settings = settings_for(workdir)
    args = [
        sys.executable,
        "-m",
        "services.recommend",
        "--workdir",
        str(settings.workdir),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--host",
        host,
    ]
    os.execv(sys.executable, args)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
