"""The `tandem` command.

It starts fast (issue 17): only typer, rich and the settings load here. Each command imports the
library it needs when it runs, and the heavy sub-commands (evaluate, audit, device, stack, reference,
expectations) are loaded only when named (`tandem.cli.lazy`), so `tandem --help`, `tandem tasks`,
`tandem keys` and `tandem releases` never load torch, Prefect, MLflow or GX."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tandem.cli import launch
from tandem.cli.errors import EXIT_BLOCKED
from tandem.cli.lazy import LazyGroup
from tandem.cli.tasks import init_command, tasks_command
from tandem.settings import Settings

app = typer.Typer(help="Tandem: server/device training for iOS apps.", no_args_is_help=True, add_completion=False,
                  cls=LazyGroup)
console = Console()


@app.command()
def share(
    source: str = typer.Option("task", help="task (the task's data set, see `tandem tasks`) or synthetic (fast, seeded)"),
    fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="fraction of each sharing user's windows to share"),
    holdout_every: int = typer.Option(5, min=2, help="every N-th user never shares: the evaluation users"),
    batch_size: int = typer.Option(64, min=1, help="windows per uploaded batch"),
    users_: int = typer.Option(8, "--users", help="number of users (synthetic source only)"),
    seed: int = typer.Option(0, help="seed (synthetic source only)"),
    policy: str = typer.Option("pseudonymized", help="sharing policy: a preset (pseudonymized, anonymized, dp, "
                               "encrypted, all), a policy name (e.g. anonymized+dp/v1) or a path to a policy JSON"),
    via: Optional[str] = typer.Option(None, help="a device gateway URL (e.g. $TANDEM_GATEWAY_URL), or `embedded` (a gateway "
                                      "in this process on a free 127.0.0.1 port): devices enroll, sign and upload in wire "
                                      "format v1 through it instead of writing to the store"),
):
    """The devices' upload: share a fraction of each sharing user's windows as batches in the landing
    zone (incoming/), in the modified form the sharing policy declares. Keys: TANDEM_PSEUDONYM_KEY (and
    TANDEM_PSEUDONYM_KEY_ID); for encrypted, TANDEM_ENCRYPTION_KEY (hex, 32 bytes) and TANDEM_ENCRYPTION_KEY_ID."""
    from rich.progress import Progress

    from tandem import task as tasks
    from tandem.data.store import store_from_settings
    from tandem.fleet import devices, users
    from tandem.privacy.ledger import LedgerError
    from tandem.privacy.policy import load_policy

    settings = Settings()
    try:
        sharing_policy = load_policy(policy)
    except (ValueError, OSError) as e:
        raise typer.BadParameter(str(e).splitlines()[0], param_hint="--policy")
    dropped = users.Dropped()  # what the task's table left out, said below (never a silent loss)
    kwargs = {"n_users": users_, "seed": seed} if source == "synthetic" else {"dropped": dropped}
    everyone = users.load_fleet(tasks.resolve(settings.task), source, **kwargs)
    store = store_from_settings(settings)
    embedded = None
    if via == "embedded":  # the real door over loopback HTTP, for as long as this share runs (make demo)
        from tandem.gateway.server import ThreadedGateway

        embedded = ThreadedGateway(settings, store).start()
        via = embedded.url
    try:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("sharing", total=len(everyone))
            shared = devices.share_fleet(settings, store, everyone, fraction=fraction, holdout_every=holdout_every,
                                         batch_size=batch_size, policy=sharing_policy,
                                         on_user=lambda _: progress.advance(bar), via=via)
    except LedgerError as e:  # a device that cannot read its privacy ledger shares nothing
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1)
    except Exception as e:  # the gateway's refusal or silence, in one line
        from httpx import HTTPError

        from tandem.fleet.gateway_client import GatewayRefused
        if isinstance(e, GatewayRefused):
            console.print(f"[red]error:[/] {e}")
        elif isinstance(e, HTTPError):
            console.print(f"[red]error:[/] the gateway at {via} does not answer ({type(e).__name__}): start it with "
                          "`tandem gateway` or `tandem stack up`")
        else:
            raise
        raise typer.Exit(1)
    finally:
        if embedded is not None:
            embedded.stop()
    report = shared.report
    for line in dropped.lines():
        console.print(f"[yellow]{line}[/]")
    for line in report.refusals:
        console.print(f"[yellow]{line}[/]")
    console.print(f"{report.users} users shared {report.windows} windows in {len(report.written) + len(report.already_there)} "
                  f"batches: [bold]{len(report.written)} new[/], {len(report.already_there)} already in {store.url}/incoming/")
    if via:
        console.print(f"through the device gateway at {via} (wire format v1, signed)")
    console.print(f"policy {sharing_policy.name}" + (f"; {report.withheld} windows withheld: privacy budget spent"
                                                      if report.withheld else ""))
    console.print(f"{len(shared.evaluators)} evaluation users never share; their data stays in {settings.devices_dir}")


@app.command()
def ingest(direct: bool = typer.Option(False, help="run in this process without Prefect (what cron or a benchmark calls)")):
    """Ingest the new batches, without training: validate them in chunks (Great Expectations), append the
    good rows to the table of accepted rows (one commit per chunk), quarantine the bad ones with a
    reason, ledger every batch once. Runs the `ingest` flow (Prefect ephemeral unless PREFECT_API_URL)."""
    from tandem import pipeline

    settings = Settings()
    if direct:
        summary = pipeline.ingest_new(pipeline.Context(settings))
    else:
        summary = launch.run_flow(launch.flow("flows.ingest:ingest", settings))
    console.print(f"batches: {summary['new_batches']} new, {summary['accepted']} accepted, {summary['quarantined']} quarantined")
    for batch, reason in summary.get("quarantine_reasons", {}).items():
        console.print(f"  [yellow]quarantined[/] {batch}: {reason}")
    console.print(f"table of accepted rows: version {summary['table_version']}")
    check = summary.get("reference_check")
    if check:
        rate = "not measured (no accepted rows)" if check["false_match_rate"] is None else f"{check['false_match_rate']:.4%}"
        console.print(f"reference check by {check['mode']} ({check['why']}); false matches on "
                      f"{check['measured_on_rows']} accepted rows: {rate}")


@app.command()
def run(
    params_file: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                               help="JSON with the run parameters (RunParams); unknown names are refused"),
    epochs: Optional[int] = typer.Option(None, min=1, help="override the pretraining epochs"),
    force: bool = typer.Option(False, help="train and release even with no new batches"),
):
    """Run the train-and-release flow locally (Prefect in ephemeral mode unless PREFECT_API_URL is set):
    ingest first, then train on the table's latest version. Exit 3 when the gates block the candidate."""
    from tandem import pipeline
    from tandem.release.params import RunParams, load_run_params

    settings = Settings()
    ctx = pipeline.Context(settings)
    params = (load_run_params(params_file.read_text(), ctx.task, f"--params-file {params_file}") if params_file
              else RunParams.for_task(ctx.task))
    overrides = {"train": {"epochs": epochs}} if epochs is not None else {}
    # validated again with the overrides: --epochs goes through the same checks as the file
    params = RunParams.model_validate({**params.model_dump(), **overrides,
                                       "train": {**params.train.model_dump(), **overrides.get("train", {})},
                                       "force": force or params.force})
    pipeline.preflight(ctx)  # a missing key or an unreachable store: one line now, not a traceback later
    train_and_release = launch.flow("flows.train_release:train_and_release", settings)
    result = launch.run_flow(train_and_release, params)
    _print_outcome(result)
    if result.get("status") == "blocked":
        raise typer.Exit(EXIT_BLOCKED)  # nothing published: a CI script must not carry on as if it had


def _headline(metrics: dict) -> str:
    """The task's headline metrics: accuracy and macro-F1, or MAE and RMSE."""
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    return f"MAE {metrics['mae']:.3f}, RMSE {metrics['rmse']:.3f}"


def _print_outcome(result: dict) -> None:
    console.print(f"batches: {result['new_batches']} new, {result['accepted']} accepted, {result['quarantined']} quarantined")
    for batch, reason in result.get("quarantine_reasons", {}).items():
        console.print(f"  [yellow]quarantined[/] {batch}: {reason}")
    status = result.get("status")
    if status == "published":
        console.print(f"[green]published[/] {result['model']} version {result['version']} to channel "
                      f"[bold]{result['channel']}[/] ({result['release']}); on evaluation users: {_headline(result['metrics'])}")
    elif status == "blocked":
        console.print(f"[red]blocked[/] version {result.get('version')}: " + "; ".join(result.get("reasons", [])))
    elif status == "up-to-date":
        console.print(f"nothing new since snapshot {result['snapshot']} (already {result['previous'].get('outcome')} "
                      f"as version {result['previous'].get('version')}): nothing trained, nothing published")
    else:
        console.print("no accepted data yet: nothing trained, nothing published")


@app.command()
def releases():
    """List published versions and where each channel points."""
    from tandem.data.store import store_from_settings
    from tandem.release.layout import list_channels, list_releases

    settings = Settings()
    store = store_from_settings(settings)
    channels = list_channels(store, settings.model_name)
    table = Table(title=f"{settings.model_name} releases in {store.url}")
    found = list_releases(store, settings.model_name)
    # the task's headline metrics: accuracy and macro-F1, or a regressor's MAE and RMSE
    regression = any("mae" in m.get("metrics", {}) for m in found)
    keys, titles = (("mae", "rmse"), ("MAE", "RMSE")) if regression else (("accuracy", "macro_f1"), ("accuracy", "macro-F1"))
    for col in ("version", "channels", "created", *titles, "dataset", "mlflow run"):
        table.add_column(col)
    for m in found:
        on = ", ".join(sorted(c for c, p in channels.items() if p.get("version") == m["version"]))
        metrics = m.get("metrics", {})
        table.add_row(m["version"], on, m.get("created_at", ""), *(f"{metrics.get(k, float('nan')):.3f}" for k in keys),
                      m.get("dataset", {}).get("snapshot_id", ""), m.get("mlflow", {}).get("run_id", "")[:12])
    console.print(table)
    if not channels:
        console.print("no channel points to a release yet")


@app.command()
def pull(
    out: Path = typer.Option(..., help="folder to write the release into"),
    channel: str = typer.Option("staging", help="channel to pull"),
    version: Optional[str] = typer.Option(None, help="a version instead of a channel"),
    public_key: Optional[list[str]] = typer.Option(None, "--public-key", help="the release public key the app pins "
                                                   "(hex, PEM or a file); repeat during a key rotation. Also "
                                                   "TANDEM_RELEASE_PUBLIC_KEYS"),
    min_version: Optional[int] = typer.Option(None, min=1, help="refuse any release below this version (what the app "
                                              "build pins against rollbacks). Also TANDEM_MIN_RELEASE_VERSION"),
):
    """What an app build runs: download a release, verify the channel pointer's and the manifest's
    signatures against the pinned public key, the version against the pinned minimum and every
    file's sha256 against the manifest. On any mismatch it fails and writes nothing."""
    from tandem.data.store import store_from_settings
    from tandem.release import signing
    from tandem.release.layout import ReleaseError
    from tandem.release.layout import pull as pull_release

    settings = Settings()
    trust = signing.trusted_from(settings, public_key)
    if not trust.keys:
        raise ReleaseError("no public key pinned: pass --public-key (the release public key) or set "
                           "TANDEM_RELEASE_PUBLIC_KEYS; unsigned releases are never pulled")
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file, not a folder: name a folder for the release files")
    floor = min_version if min_version is not None else settings.min_release_version
    manifest = pull_release(store_from_settings(settings), settings.model_name, out, trust, channel=channel,
                            version=version, min_version=floor)
    console.print(f"{settings.model_name} version {manifest['version']}: signature by {manifest.get('signed_by')} and "
                  f"{len(manifest['files'])} files verified into {out}")
    for name, meta in manifest["files"].items():
        console.print(f"  {name}  sha256 {meta['sha256']}  {meta['size']} bytes")


@app.command()
def promote(version: Optional[str] = typer.Option(None, help="a version instead of staging's")):
    """Move production to the staging version (MLflow alias and store channel together)."""
    _move("promote", version)


@app.command()
def rollback():
    """Move production back to the version it pointed to before."""
    _move("rollback")


def _move(action: str, version: str | None = None) -> None:
    from tandem.data.store import store_from_settings
    from tandem.release import channels, signing
    from tandem.release.tracker import Tracker

    settings = Settings()
    signer = signing.require_signer(settings)  # the moved pointer is signed: app builds refuse unsigned ones
    store, tracker = store_from_settings(settings), Tracker(settings)
    # a ReleaseError (nothing to promote or roll back to) is the one error line and a non-zero exit
    pointer = (channels.promote(tracker, store, version, signer) if action == "promote"
               else channels.rollback(tracker, store, signer))
    console.print(f"production -> {settings.model_name} version {pointer['version']} ({pointer['reason']})")


@app.command()
def revoke(
    batch: Optional[str] = typer.Option(None, help="a batch id (ledger/batches/<id>.json) or its incoming/ key"),
    pseudonym: Optional[str] = typer.Option(None, help="a pseudonym, or its first 16+ characters as in incoming/<day>/<prefix>/: "
                                            "every row it shared"),
    reason: str = typer.Option(..., help="why, e.g. 'erasure request' or 'poisoned batch'"),
    erase: bool = typer.Option(False, "--erase", help="also erase: rewrite the table without the rows, vacuum its old "
                               "versions, delete the landing-zone objects (recorded in ledger/erasures/)"),
):
    """Withdraw accepted data from every future snapshot (the rows stay in the table's versions and in
    incoming/), or with --erase remove it from the store; the next release's manifest says what was withdrawn."""
    from tandem.data import revocations
    from tandem.data.ingest import accepted_entries, batch_ref
    from tandem.data.store import store_from_settings

    if (batch is None) == (pseudonym is None):
        raise typer.BadParameter("give exactly one of --batch or --pseudonym")
    settings = Settings()
    store = store_from_settings(settings)
    kind, value, known = "pseudonym", pseudonym, None
    if batch is not None:
        kind, value = "batch", batch_ref(batch).batch_id if batch.startswith("incoming/") else batch
        known = {e["batch_id"] for e in accepted_entries(store)}
    if erase:
        done = revocations.erase(store, kind, value, reason, known)
        console.print(f"erased {kind} ({done['reason']}): {done['rows_deleted']} rows rewritten out of the table "
                      f"(now version {done['table_version']}), {done['table_files_vacuumed']} old table files vacuumed, "
                      f"{done['landing_objects_deleted']} landing-zone objects deleted (record {revocations.ERASURES}{done['id']}-…)")
        return
    record = revocations.revoke(store, kind, value, reason, known)
    copies = f" and {len(record['copies'])} byte-identical copies" if record.get("copies") else ""
    console.print(f"withdrawn {record['kind']} {record['value'][:24]}{copies} ({record['reason']}): left out of every "
                  f"snapshot from the next run on; not erased: its rows stay in the table's versions and in incoming/ "
                  f"(erase with --erase) (record {revocations.REVOCATIONS}{record['id']}.json)")


keys_app = typer.Typer(help="Release signing keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(out_dir: Path = typer.Option(..., help="folder for release-signing.env (secret, mode 600) and "
                                             "release-public-key.txt (what app builds pin)")):
    """A new Ed25519 key pair. Export TANDEM_SIGNING_KEY from the env file on the server only; never
    put it in the store, git or CI logs."""
    from tandem.release import signing
    from tandem.release.layout import ReleaseError

    private, public = signing.generate()
    out_dir.mkdir(parents=True, exist_ok=True)
    secret = out_dir / "release-signing.env"
    if secret.exists():
        raise ReleaseError(f"{secret} exists: not overwriting a signing key (move it away to rotate)")
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"TANDEM_SIGNING_KEY={private}\n")
    (out_dir / "release-public-key.txt").write_text(public + "\n")
    kid = signing.key_id(signing.load_public(public))
    console.print(f"key {kid}: secret in {secret}, public key in {out_dir / 'release-public-key.txt'}")


app.add_typer(keys_app, name="keys")
app.command("tasks")(tasks_command)
app.command("init")(init_command)
# reference, device, stack, evaluate, expectations, audit: registered lazily (tandem.cli.lazy.LAZY)

if __name__ == "__main__":
    app()
