"""``sigmax report`` (being built)."""
import typer

app = typer.Typer()
