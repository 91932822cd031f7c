"""``sigmax paper`` (being built)."""
import typer

app = typer.Typer()
