"""The ``merl`` console command. Each area owns one sub-module of commands.

Heavy imports (torch, ray, transformers) happen inside command bodies so that ``--help``
and config errors answer instantly.
"""

from __future__ import annotations

import logging
import sys

import typer

from merl.core.config import ConfigError

app = typer.Typer(
    name="merl",
    help="merl-ray: MERL ECG-report pretraining, tuning, CKEPE prompts and zero-shot evaluation on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from merl.cli import cluster as cluster_cli
    from merl.cli import data as data_cli
    from merl.cli import demo as demo_cli
    from merl.cli import evaluate as evaluate_cli
    from merl.cli import knowledge as knowledge_cli
    from merl.cli import train as train_cli

    app.add_typer(data_cli.app, name="data", help="Synthesise, ingest (WFDB -> Parquet shards) and inspect ECG data.")
    app.add_typer(knowledge_cli.app, name="knowledge", help="Build and query the clinical knowledge index.")
    app.add_typer(cluster_cli.app, name="cluster", help="Local cluster and Ray job submission.")
    for mod in (train_cli, evaluate_cli, knowledge_cli, cluster_cli, demo_cli):
        for fn in getattr(mod, "TOP_LEVEL", ()):
            app.command(fn.__name__.replace("_cmd", "").replace("_", "-"))(fn)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from merl.core.env import apply_defaults

    apply_defaults()  # not offline: users may name hub models; the bundled default needs none
    from merl.cluster.config import apply_cluster_defaults

    apply_cluster_defaults()


_register()


def main() -> None:
    """Entry point: user errors print one clear message and exit 2, never a traceback."""
    from merl.core.raysession import RaySessionError

    try:
        app()
    except (ConfigError, RaySessionError, FileNotFoundError) as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
