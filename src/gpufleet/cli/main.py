"""The `gpufleet` command. Talks to the server through the client only (serve and sim excepted)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from gpufleet.cli import accounts, admin, hardware, health, jobs, sim
from gpufleet.cli import sessions
from gpufleet.cli.usage import usage_app
from gpufleet.cli.results import results_app
from gpufleet.cli.ci import ci_app
from gpufleet.cli.artifacts import artifacts as artifacts_cmd
from gpufleet.cli.groups import group_app
from gpufleet.cli.output import err
from gpufleet.client import ApiError, ServerUnreachable
from gpufleet.domain import ValidationError
from gpufleet.domain.errors import ServerRunning

app = typer.Typer(name="gpufleet", help="The control plane of a GPU lab.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})

app.command()(jobs.submit)
app.command()(jobs.jobs)
app.command()(jobs.show)
app.command()(jobs.logs)
app.command()(jobs.cancel)
app.command()(sessions.shell)
app.command()(sessions.attach)
app.command("exec")(sessions.exec_)
app.command()(admin.nodes)
app.add_typer(admin.node_app, name="node")
app.command("show-node")(hardware.show_node)
app.add_typer(hardware.perf_app, name="perf")
app.command()(admin.tenants)
app.add_typer(admin.tenant_app, name="tenant")
app.add_typer(accounts.token_app, name="token")
app.add_typer(accounts.user_app, name="user")
app.command()(admin.book)
app.command()(admin.bookings)
app.command()(admin.unbook)
app.add_typer(admin.booking_app, name="booking")
app.command()(admin.audit)
app.add_typer(sim.app, name="sim")
app.add_typer(health.health_app, name="health")
app.add_typer(health.schedule_app, name="schedule")
app.add_typer(usage_app, name="usage")
app.add_typer(results_app, name="results")
app.add_typer(ci_app, name="ci")
app.command("artifacts")(artifacts_cmd)
app.add_typer(group_app, name="group")


@app.command()
def serve(
    db: Optional[str] = typer.Option(None, "--db", help="database URL (default: SQLite in GPUFLEET_HOME)"),
    inventory: Optional[str] = typer.Option(None, "--inventory", help="inventory YAML"),
    fake_gpus: Optional[int] = typer.Option(None, "--fake-gpus", help="pretend this host has N GPUs"),
    host: Optional[str] = typer.Option(None, "--host"),
    port: Optional[int] = typer.Option(None, "--port"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | slurm | kubernetes"),
    policy: Optional[str] = typer.Option(None, "--policy", help="fifo | priority | fairshare | sjf | las"),
    config: Optional[str] = typer.Option(None, "--config", help="server config YAML"),
    home: Optional[str] = typer.Option(None, "--home", help="data directory (env GPUFLEET_HOME)"),
    kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Kubernetes executor"),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Kubernetes executor"),
) -> None:
    """Start the control plane: REST API, /metrics, and the control loops."""
    from gpufleet.main import serve as run_server
    from gpufleet.settings import load_settings

    s = load_settings(config, db=db, inventory=inventory, fake_gpus=fake_gpus, host=host, port=port,
                      executor=executor, policy=policy, home=home)
    if kubeconfig:
        s.kubernetes["kubeconfig"] = kubeconfig
    if namespace:
        s.kubernetes["namespace"] = namespace
    run_server(s)


def main() -> None:
    """Run the CLI. Usage errors exit 2 (typer); bad input found by us or the server exits 2 with
    one line naming the field; never a traceback for anything we expect."""
    try:
        app()
    except ValidationError as e:
        err.print(f"error: {e.field}: {e.message}", markup=False)
        sys.exit(2)
    except ApiError as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(2 if e.status in (400, 422) else 1)
    except ServerRunning as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(2)
    except ServerUnreachable as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(1)
