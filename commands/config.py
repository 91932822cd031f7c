"""``sigmax config``: show the effective settings, secrets redacted."""


from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("config")
def config(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Show the settings this invocation would use (profile, env file, SIGMAX_*), secrets as ***."""
    from sigmax_cli.settings import redacted_dict

    state = obj(ctx)
    settings = state.settings()
    data = redacted_dict(settings)
    data["ledger_url"] = _ledger_shown(settings)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"sigmax settings (profile {settings.profile})", show_header=True)
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                table.add_row(f"{key}.{sub}", str(subvalue))
        else:
            table.add_row(key, str(value))
    state.console.print(table)


def _ledger_shown(settings) -> str:
    from sigmax_cli.settings import redact_url

    return redact_url(settings.ledger_url)
