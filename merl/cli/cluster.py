"""`merl cluster ...`: a persistent local head and Ray Jobs submission."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)
TOP_LEVEL: list = []

_CFG = typer.Option(None, "--config", "-c", help="Cluster config YAML (default: ./ray_config.yaml if present).")


def _load(config, overrides=()):
    from merl.cluster.config import load_cluster_config

    return load_cluster_config(config, list(overrides))


@app.command("up")
def up(config: Optional[str] = _CFG) -> None:
    """Start a single-machine Ray head with the Jobs API (dashboard) for `merl cluster submit`."""
    from merl.cluster.head import up as start

    cfg = _load(config)
    start(cfg.local)
    typer.echo(f"Ray head up: address 127.0.0.1:{cfg.local.head_port}, jobs http://127.0.0.1:{cfg.local.dashboard_port}")


@app.command("down")
def down(config: Optional[str] = _CFG) -> None:
    """Stop the head started by `merl cluster up` (only its processes when local.temp_dir is set)."""
    from merl.cluster.head import down as stop

    typer.echo(stop(_load(config).local.temp_dir).strip() or "stopped")


@app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    config: Optional[str] = _CFG,
    address: Optional[str] = typer.Option(None, "--address", help="Jobs API URL (overrides jobs.address)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job until it ends."),
    timeout: Optional[float] = typer.Option(None, help="Seconds to wait before returning (job keeps running)."),
    job_id: Optional[str] = typer.Option(None, "--job-id", help="Submission id (default: generated)."),
) -> None:
    """Submit a command to the cluster, e.g. `merl cluster submit -- merl train --config configs/pretrain_paper.yaml`.

    The project folder travels as the job's working_dir (excludes from ray_config.yaml)."""
    from merl.cluster import jobs

    entry = " ".join(ctx.args)
    if not entry:
        raise typer.BadParameter("give the command to run after `--`")
    overrides = [f"jobs.address={address}"] if address else []
    cfg = _load(config, overrides)
    sid = jobs.submit(cfg, entry, submission_id=job_id)
    typer.echo(f"submitted {sid}")
    if wait:
        ji = jobs.wait(cfg.jobs.address, sid, timeout_s=timeout)
        typer.echo(jobs.logs(cfg.jobs.address, sid))
        typer.echo(f"job {sid}: {ji.status} {ji.message}")
        if ji.status in ("FAILED", "STOPPED"):
            raise typer.Exit(1)


@app.command("status")
def status(
    job: Optional[str] = typer.Argument(None, help="Submission id (omit to list all jobs)."),
    config: Optional[str] = _CFG,
) -> None:
    """Show one job's status, or a table of all jobs on the cluster."""
    from rich.console import Console
    from rich.table import Table

    from merl.cluster import jobs

    cfg = _load(config)
    rows = [jobs.info(cfg.jobs.address, job)] if job else jobs.list_jobs(cfg.jobs.address)
    t = Table("job", "status", "entrypoint", "message")
    for r in rows:
        t.add_row(r.submission_id, r.status, r.entrypoint, r.message)
    Console().print(t)


@app.command("logs")
def logs(job: str = typer.Argument(..., help="Submission id."), config: Optional[str] = _CFG) -> None:
    """Print a job's driver logs."""
    from merl.cluster import jobs

    typer.echo(jobs.logs(_load(config).jobs.address, job))


@app.command("stop")
def stop(job: str = typer.Argument(..., help="Submission id."), config: Optional[str] = _CFG) -> None:
    """Stop a running job."""
    from merl.cluster import jobs

    typer.echo("stopped" if jobs.stop(_load(config).jobs.address, job) else "not running")
