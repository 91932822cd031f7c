"""The strategies ``--strategy`` can name: built-ins and installed plugins (``sigmax strategy list``)."""

from __future__ import annotations

from typing import Any

from sigmax_cli.errors import ConfigError


def catalog() -> list[dict[str, Any]]:
    """One row per strategy: ``{"spec", "kind", "source", "params", "error"}``.

    ``kind`` is ``built-in`` or ``plugin``; ``source`` where it comes from (a module, or a
    distribution with its version and entry point); ``params`` the declared parameters and
    their defaults (``None`` when not known without loading a model); ``error`` the sentence
    of a plugin that cannot be loaded (it is listed all the same).
    """
    from sigmax_cli.settings import StrategySettings
    from sigmax_cli.strategies.user import declared_params, load_plugin, plugins

    rules = StrategySettings().model_dump(exclude={"tables", "position_fraction"})
    rows: list[dict[str, Any]] = [
        {"spec": "rules", "kind": "built-in", "source": "sigmax_cli.strategies.rules (profile's [strategy])",
         "params": rules, "error": None},
        {"spec": "rl:MODEL.zip", "kind": "built-in",
         "source": "sigmax_cli.rl.strategy (a model from `sigmax train-rl`; rl extra)", "params": None,
         "error": None},
    ]
    for name, ep in plugins():
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version}: {ep.value}" if dist is not None else ep.value
        try:
            cls, _ = load_plugin(name, ep, name)
            params, error = {k: _shown(v) for k, v in declared_params(cls).items()}, None
        except ConfigError as exc:
            params, error = None, exc.sentence()
        rows.append({"spec": name, "kind": "plugin", "source": source, "params": params, "error": error})
    return rows


def _shown(value: Any) -> Any:
    import dataclasses

    return "(required)" if value is dataclasses.MISSING else value
