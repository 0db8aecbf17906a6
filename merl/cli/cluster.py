"""`merl cluster ...`: a persistent local head and Ray Jobs submission."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)
TOP_LEVEL: list = []

_CFG = typer.Option(None, "--config", "-c", help="merl cluster settings YAML (default: ./merl_cluster.yaml if present).")
_ADDR = typer.Option(None, "--address", help="Jobs API URL, e.g. http://head:8265 (overrides jobs.address).")


def _load(config, address: str | None = None, python: str | None = None):
    from merl.cluster.config import load_cluster_config

    overrides = [f"jobs.address={address}"] if address else []
    if python:
        overrides.append(f"jobs.python={python}")
    return load_cluster_config(config, overrides)


def _write(chunk: str) -> None:
    typer.echo(chunk, nl=False)


def _final(sid: str, ji) -> str:
    """The status line after streamed logs; Ray's failure message repeats the log tail, so only its first line."""
    first = ji.message.strip().splitlines()[0] if ji.message.strip() else ""
    return f"job {sid}: {ji.status}" + (f" - {first}" if first else "")


@app.command("up")
def up(config: Optional[str] = _CFG) -> None:
    """Start a single-machine Ray head with the Jobs API (dashboard) for `merl cluster submit`."""
    from merl.cluster.head import up as start

    cfg = _load(config)
    state = start(cfg.local)
    typer.echo(f"Ray head up: address 127.0.0.1:{cfg.local.head_port}, jobs http://127.0.0.1:{cfg.local.dashboard_port}, "
               f"logs {state.temp_dir}")


@app.command("down")
def down(config: Optional[str] = _CFG) -> None:
    """Stop the head that `merl cluster up` started (only its processes; other Ray clusters on
    this machine are left alone)."""
    from merl.cluster.head import down as stop

    typer.echo(stop(_load(config).local))


@app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    config: Optional[str] = _CFG,
    address: Optional[str] = _ADDR,
    python: Optional[str] = typer.Option(None, "--python", help="Interpreter on the cluster that runs a leading `merl` "
                                         "(overrides jobs.python; default: the local head's, else `python`)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Stream the job's logs until it ends."),
    timeout: Optional[float] = typer.Option(None, help="Seconds to follow before returning (the job keeps running)."),
    job_id: Optional[str] = typer.Option(None, "--job-id", help="Submission id (default: generated)."),
) -> None:
    """Run a command as a Ray job, e.g. `merl cluster submit -- merl train --config configs/pretrain_paper.yaml`.

    A leading `merl` runs as `<jobs.python> -m merl`; the working dir's configs travel with the job, the code is the cluster's installed merl-ray. Exits 1 when the job fails."""  # noqa: E501 - one help paragraph
    from merl.cluster import jobs

    cfg = _load(config, address, python)
    sid = jobs.submit(cfg, list(ctx.args), submission_id=job_id)
    typer.echo(f"submitted {sid}", err=True)
    if not wait:
        typer.echo(f"follow it with: merl cluster logs {sid} --follow", err=True)
        return
    ji = jobs.follow(cfg.jobs_address(), sid, _write, timeout_s=timeout)
    if ji.status not in jobs.TERMINAL:
        typer.echo(f"job {sid} still {ji.status} after {timeout:g} s; follow it with: merl cluster logs {sid} --follow",
                   err=True)
        return
    typer.echo(_final(sid, ji), err=True)
    if ji.status != "SUCCEEDED":
        raise typer.Exit(1)


@app.command("status")
def status(
    job: Optional[str] = typer.Argument(None, help="Submission id (omit to list all jobs)."),
    config: Optional[str] = _CFG,
    address: Optional[str] = _ADDR,
) -> None:
    """Show one job's status, or a table of all jobs on the cluster."""
    from rich.console import Console
    from rich.table import Table

    from merl.cluster import jobs

    where = _load(config, address).jobs_address()
    rows = [jobs.info(where, job)] if job else jobs.list_jobs(where)
    t = Table("job", "status", "entrypoint", "message")
    for r in rows:
        t.add_row(r.submission_id, r.status, r.entrypoint, r.message)
    Console().print(t)


@app.command("logs")
def logs(
    job: str = typer.Argument(..., help="Submission id."),
    config: Optional[str] = _CFG,
    address: Optional[str] = _ADDR,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream new output until the job ends."),
) -> None:
    """Print a job's driver logs."""
    from merl.cluster import jobs

    where = _load(config, address).jobs_address()
    if follow:
        ji = jobs.follow(where, job, _write)
        typer.echo(_final(job, ji), err=True)
    else:
        typer.echo(jobs.logs(where, job), nl=False)


@app.command("stop")
def stop(
    job: str = typer.Argument(..., help="Submission id."),
    config: Optional[str] = _CFG,
    address: Optional[str] = _ADDR,
) -> None:
    """Stop a running job."""
    from merl.cluster import jobs

    typer.echo("stopped" if jobs.stop(_load(config, address).jobs_address(), job) else "not running")
