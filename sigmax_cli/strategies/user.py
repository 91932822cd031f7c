"""Users' own strategies: files, modules and installed plugins behind the Strategy interface.

Specs (``--strategy``):

* ``PATH.py:ClassName`` (or ``PATH.py`` when the file defines exactly one strategy class);
* ``package.module:ClassName``, imported from ``sys.path``;
* ``NAME``, a plugin: an entry point ``NAME = "package.module:ClassName"`` of the group
  ``sigmax.strategies`` of an installed distribution.

The class API (documented in README, "Your own strategy"; :class:`BaseStrategy` implements
the bookkeeping): a class attribute ``name`` (the key of its parameter table), a nested
``Params`` dataclass (or pydantic model) whose fields, with defaults, are the strategy's
parameters, a constructor ``cls(params)``, ``warmup`` (bars), ``features(candles)`` returning
one causal series per feature name (numpy arrays, lists or pandas Series of one float per
bar; a pandas DataFrame works too), and ``on_bar(bar, position)`` returning a
:class:`~sigmax_cli.strategies.base.Signal` or ``None``.

Parameters come from the profile's ``[strategy.NAME]`` table (or
``SIGMAX_STRATEGY__NAME__PARAM``) and are validated against ``Params`` before anything runs.

Errors: a spec that cannot be loaded, a class that is not a strategy, unknown or ill-typed
parameters are :class:`~sigmax_cli.errors.ConfigError` (one sentence, exit 2). Once loaded,
the strategy runs inside :class:`UserStrategy`, which turns an exception from the user's code
into :class:`~sigmax_cli.errors.StrategyCodeError` (exit 4) carrying the user's own traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import ConfigError, StrategyCodeError
from sigmax_cli.model import Bar, Features
from sigmax_cli.strategies.base import PositionView, Signal

ENTRY_POINT_GROUP = "sigmax.strategies"
"""The entry-point group installed plugins register their strategy classes in."""

REQUIRED = ("features", "on_bar")
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # frames under sigmax_cli/ are not the user's


def snake_case(name: str) -> str:
    """``SmaCross`` -> ``sma_cross`` (the default strategy name of a class)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class BaseStrategy:
    """Convenience base class for a user strategy (subclassing it is optional).

    Subclasses declare ``name`` (default: the class name in snake_case), a nested ``Params``
    dataclass of parameters with defaults, ``warmup`` (bars, may depend on parameters: set it in
    ``__init__`` or as a property), ``features`` and ``on_bar``. The parameters are ``self.p``.

    Args:
        params: an instance of ``Params``; ``None`` = its defaults.
    """

    name: ClassVar[str] = ""
    warmup: int = 0

    @dataclasses.dataclass(frozen=True)
    class Params:
        """No parameters."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = snake_case(cls.__name__)

    def __init__(self, params: Any = None) -> None:
        self.p = params if params is not None else type(self).Params()

    def features(self, candles: Candles) -> Mapping[str, Any]:
        """Causal feature series: name -> shape ``(n,)`` for the ``n`` candles (NaN in warm-up)."""
        raise NotImplementedError

    def on_bar(self, bar: Bar, position: PositionView) -> Signal | None:
        """The decision on one closed bar; ``None`` keeps the position."""
        raise NotImplementedError

    def params(self) -> dict[str, object]:
        """The parameters as a dict (recorded with the run)."""
        return params_dict(self.p)


def params_dict(params: Any) -> dict[str, Any]:
    """A parameter object (dataclass or pydantic model) as a plain dict; ``{}`` for ``None``."""
    if params is None:
        return {}
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    if hasattr(params, "model_dump"):
        return params.model_dump()
    return dict(vars(params))


def declared_params(cls: type) -> dict[str, Any]:
    """The parameters a class declares: ``{name: default}`` of its nested ``Params`` (``{}``
    without one; ``dataclasses.MISSING`` for a field without a default)."""
    spec = getattr(cls, "Params", None)
    if spec is None:
        return {}
    if dataclasses.is_dataclass(spec):
        return {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
                for f in dataclasses.fields(spec)}
    fields = getattr(spec, "model_fields", None)
    if fields is not None:
        return {k: (dataclasses.MISSING if f.is_required() else f.get_default(call_default_factory=True))
                for k, f in fields.items()}
    return {}


# -- loading ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Source:
    """Where a strategy class came from.

    Attributes:
        kind: ``"file"``, ``"module"`` or ``"plugin"``.
        spec: the ``--strategy`` value as given.
        where: the file path, the module name, or ``"dist-name version (package.module:Class)"``.
        sha256: of the file (``kind == "file"``), else ``None``.
    """

    kind: str
    spec: str
    where: str
    sha256: str | None = None


def load_class(spec: str) -> tuple[type, Source]:
    """Import the strategy class named by ``spec`` (see the module docstring).

    Raises:
        ConfigError: missing file, syntax or import error, missing module or class, unknown
            plugin, or a class that is not a strategy; one sentence each.
    """
    text = spec.strip()
    if ":" in text:
        target, _, cls_name = text.rpartition(":")
        cls_name = cls_name.strip()
    else:
        target, cls_name = text, ""
    target = target.strip()
    if target.endswith(".py") or "/" in target or Path(target).suffix == ".py":
        module, source = _import_file(Path(target).expanduser(), spec)
    elif cls_name:
        module, source = _import_module(target, spec), Source("module", spec, target)
    else:
        return _load_plugin(text, spec)
    cls = _pick_class(module, cls_name, source)
    return cls, source


def _import_file(path: Path, spec: str) -> tuple[Any, Source]:
    if not path.exists():
        raise ConfigError(f"strategy file {path} does not exist",
                          f"check the path in --strategy {spec}, or write one with `sigmax strategy new NAME`")
    if not path.is_file():
        raise ConfigError(f"strategy file {path} is not a file", "pass PATH.py:ClassName")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read strategy file {path} ({exc.strerror})", "check its permissions") from None
    digest = hashlib.sha256(data).hexdigest()
    resolved = path.resolve()
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"sigmax_user_strategy_{stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"
    module_spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"strategy file {path} cannot be imported as Python", "give it a .py name")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look classes up by module name
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        inside = "" if exc.filename in (None, str(resolved)) else f" of {exc.filename}, which it imports,"
        raise ConfigError(f"strategy file {path} has a syntax error at line {exc.lineno}{inside} ({exc.msg})",
                          "fix that line and run again") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - anything the user's module raises while importing
        sys.modules.pop(mod_name, None)
        line = _user_line(exc, str(resolved))
        raise ConfigError(f"strategy file {path} cannot be imported: {line}{type(exc).__name__}: {exc}",
                          _import_fix(exc)) from None
    return module, Source("file", spec, str(resolved), digest)


def _import_module(name: str, spec: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"module {name} named by --strategy {spec} cannot be found on the Python path",
                              "install its package, or give a file as PATH.py:ClassName") from None
        raise ConfigError(f"module {name} cannot be imported: ModuleNotFoundError: {exc}", _import_fix(exc)) from None
    except SyntaxError as exc:
        raise ConfigError(f"module {name} has a syntax error in {exc.filename} at line {exc.lineno} ({exc.msg})",
                          "fix that line and run again") from None
    except Exception as exc:  # noqa: BLE001 - anything the user's module raises while importing
        raise ConfigError(f"module {name} cannot be imported: {type(exc).__name__}: {exc}", _import_fix(exc)) \
            from None


def _import_fix(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return f"install {exc.name or 'the missing package'} (pip install ...) or fix the import"
    return "fix the strategy's module-level code and run again"


def _user_line(exc: BaseException, filename: str) -> str:
    """``"line 12: "`` for the deepest frame of ``exc`` in ``filename``, else ``""``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return f"line {frames[-1].lineno}: " if frames else ""


def _pick_class(module: Any, cls_name: str, source: Source) -> type:
    where = f"strategy file {source.where}" if source.kind == "file" else f"module {source.where}"
    candidates = sorted(n for n, v in vars(module).items()
                        if isinstance(v, type) and v.__module__ == module.__name__ and _missing(v) == []
                        and v is not BaseStrategy)
    found = f"it defines {', '.join(candidates)}" if candidates else "it defines no strategy class"
    if not cls_name:
        if len(candidates) != 1:
            raise ConfigError(f"{where} needs a class name ({found})", f"pass --strategy {source.spec}:ClassName")
        cls_name = candidates[0]
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"{where} has no class {cls_name} ({found})", "name one of its classes after the colon")
    check_class(cls, f"{cls_name} in {where}")
    return cls


def _missing(cls: Any) -> list[str]:
    return [m for m in REQUIRED if not callable(getattr(cls, m, None))]


def check_class(cls: Any, what: str) -> None:
    """Refuse what is not a strategy class.

    Raises:
        ConfigError: ``cls`` is not a class, or lacks ``features`` / ``on_bar``.
    """
    if not isinstance(cls, type):
        raise ConfigError(f"{what} is a {type(cls).__name__}, not a strategy class",
                          "point --strategy at a class (see `sigmax strategy new NAME`)")
    missing = _missing(cls)
    if missing:
        raise ConfigError(f"{what} is not a sigmax Strategy: it has no {' or '.join(missing)} method",
                          "subclass sigmax_cli.strategies.BaseStrategy and define features() and on_bar() "
                          "(see `sigmax strategy new NAME`)")


def plugins() -> list[tuple[str, Any]]:
    """Installed plugins: ``(name, entry_point)`` of the group :data:`ENTRY_POINT_GROUP`, by name."""
    from importlib.metadata import entry_points

    return sorted(((ep.name, ep) for ep in entry_points(group=ENTRY_POINT_GROUP)), key=lambda p: p[0])


def _load_plugin(name: str, spec: str) -> tuple[type, Source]:
    installed = plugins()
    found = [ep for n, ep in installed if n == name]
    if not found:
        names = [n for n, _ in installed]
        extra = f", or one of the installed plugins {', '.join(names)}" if names else ""
        raise ConfigError(f"unknown strategy {spec!r}",
                          f"use rules, rl:MODEL.zip, PATH.py:ClassName, package.module:ClassName{extra} "
                          "(`sigmax strategy list`)")
    return load_plugin(name, found[0], spec)


def load_plugin(name: str, ep: Any, spec: str) -> tuple[type, Source]:
    """Import the strategy class of plugin ``name``, entry point ``ep`` (one of :func:`plugins`).

    Raises:
        ConfigError: its module cannot be imported, lacks the class, or the class is not a strategy.
    """
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version} ({ep.value})" if dist is not None else ep.value
    try:
        cls = ep.load()
    except ModuleNotFoundError as exc:
        raise ConfigError(f"plugin {name} ({where}) cannot be imported: ModuleNotFoundError: {exc}",
                          f"reinstall {dist.name if dist else 'its distribution'}") from None
    except AttributeError as exc:
        raise ConfigError(f"plugin {name} ({where}) names a class its module does not define ({exc})",
                          "fix the entry point in the plugin's pyproject.toml") from None
    except Exception as exc:  # noqa: BLE001 - the plugin's module-level code
        raise ConfigError(f"plugin {name} ({where}) cannot be imported: {type(exc).__name__}: {exc}",
                          "fix or reinstall the plugin") from None
    check_class(cls, f"plugin {name} ({where})")
    return cls, Source("plugin", spec, where)


def strategy_name(cls: type) -> str:
    """The class's ``name`` (its parameter table), lower-cased; snake_case of the class name
    when it declares none."""
    name = getattr(cls, "name", None)
    return (name if isinstance(name, str) and name else snake_case(cls.__name__)).lower()


def build_params(cls: type, name: str, table: Mapping[str, Any] | None) -> Any:
    """Validate ``table`` against ``cls.Params`` and build the parameter object.

    Values are converted as pydantic's lax mode does (``"20"`` -> 20 from an environment
    variable; ``1.5`` is not an int); ``Params.__post_init__`` (or a pydantic validator) may
    check relations between values by raising ``ValueError``.

    Returns:
        The ``Params`` instance; ``None`` when the class declares no ``Params`` and
        ``table`` is empty.

    Raises:
        ConfigError: an unknown parameter, a value of the wrong type, a failed check, or
            parameters for a class that declares none.
    """
    table = dict(table or {})
    spec = getattr(cls, "Params", None)
    where = f"[strategy.{name}] (or SIGMAX_STRATEGY__{name.upper()}__*)"
    if spec is None:
        if table:
            raise ConfigError(f"strategy {name} declares no parameters, yet {where} sets {', '.join(sorted(table))}",
                              "remove them, or declare them in a nested Params dataclass")
        return None
    declared = declared_params(cls)
    unknown = sorted(set(table) - set(declared))
    if unknown:
        raise ConfigError(f"strategy {name} has no parameter {', '.join(repr(u) for u in unknown)} "
                          f"(it declares {', '.join(declared) or 'none'})", f"fix {where}")
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(spec).validate_python(table)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "its parameters"
        value = f" (got {err['input']!r})" if loc in table else ""
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(f"strategy {name} parameter {loc}: {msg}{value}", f"fix {where}") from None
    except (TypeError, ValueError) as exc:  # a Params that pydantic cannot build
        raise ConfigError(f"strategy {name}'s parameters cannot be built ({exc})", f"fix {where}") from None


def load_user_strategy(spec: str, tables: Mapping[str, Mapping[str, Any]] | None = None) -> UserStrategy:
    """Load, parametrise and wrap a user strategy.

    Args:
        spec: a user spec (see the module docstring).
        tables: parameter tables by strategy name (``settings.strategy.tables``).

    Raises:
        ConfigError: see :func:`load_class` and :func:`build_params`; the constructor raised;
            ``warmup`` is not a whole number of bars >= 0; the instance lacks ``features`` /
            ``on_bar``.
    """
    cls, source = load_class(spec)
    name = strategy_name(cls)
    params = build_params(cls, name, (tables or {}).get(name))
    try:
        obj = cls(params) if getattr(cls, "Params", None) is not None else cls()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's constructor
        tb = traceback.extract_tb(exc.__traceback__)
        line = f"{Path(tb[-1].filename).name} line {tb[-1].lineno}: " if tb else ""
        raise ConfigError(f"strategy {name} could not be created: {line}{type(exc).__name__}: {exc}",
                          "fix its __init__ (it is called as Class(params))") from None
    warmup = getattr(obj, "warmup", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, int | np.integer) or warmup < 0:
        raise ConfigError(f"strategy {name} has warmup {warmup!r}, not a whole number of bars",
                          "set warmup to the bars of history its features need (an int >= 0)")
    history = getattr(obj, "history", warmup)
    if isinstance(history, bool) or not isinstance(history, int | np.integer) or history < 0:
        raise ConfigError(f"strategy {name} has history {history!r}, not a whole number of bars",
                          "set history to the bars its features need to settle (`sigmax strategy check` "
                          "measures it), or leave it out")
    return UserStrategy(obj, name, source, params, int(warmup), int(history))


# -- running ---------------------------------------------------------------------------------------
class UserStrategy:
    """A user's strategy object behind the :class:`~sigmax_cli.strategies.base.Strategy`
    interface, with its failures made :class:`~sigmax_cli.errors.StrategyCodeError`.

    ``features`` converts what the user returns (numpy arrays, lists, pandas Series or a
    DataFrame) into lists of floats, one per bar (what the engine and ``bar.features``
    hold), after checking names and lengths. ``on_bar`` checks the answer is a ``Signal``
    with a target in [0, 1], or ``None``.

    Args:
        inner: the user's strategy instance.
        name: its name (parameter table key).
        source: where its class came from.
        params: its parameter object (``None`` without ``Params``).
        warmup: bars before the first ``on_bar``.
        history: bars a replay loads before ``--start`` (at least ``warmup``; the class's
            optional ``history`` attribute).
    """

    def __init__(self, inner: Any, name: str, source: Source, params: Any, warmup: int,
                 history: int | None = None) -> None:
        self.inner = inner
        self.name = name
        self.source = source
        self.param_values = params_dict(params)
        self.warmup = warmup
        self.history = max(warmup, history if history is not None else warmup)
        self._on_bar = inner.on_bar

    def features(self, candles: Candles) -> Features:
        """The user's features as lists of floats, each of ``len(candles)`` values.

        Raises:
            StrategyCodeError: the user's ``features`` raised, or returned something that is not
                a mapping of name -> one number per bar.
        """
        try:
            raw = self.inner.features(candles)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code (sys.exit too)
            raise self._failure("features", exc, f"{candles.symbol}, {len(candles)} bars") from None
        return self._convert(raw, len(candles))

    def _convert(self, raw: Any, n: int) -> Features:
        if hasattr(raw, "columns") and hasattr(raw, "to_numpy"):  # a pandas DataFrame
            raw = {str(c): raw[c].to_numpy() for c in raw.columns}
        if not isinstance(raw, Mapping):
            raise StrategyCodeError(f"features() of strategy {self.name} returned {type(raw).__name__}, "
                                    "not a mapping of feature name to series",
                                    "return a dict such as {'fast': array, 'slow': array}")
        out: Features = {}
        for key, series in raw.items():
            try:
                arr = np.asarray(series, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise StrategyCodeError(f"feature {key!r} of strategy {self.name} is not numeric ({exc})",
                                        "return one float per bar (NaN during warm-up)") from None
            if arr.shape != (n,):
                raise StrategyCodeError(f"feature {key!r} of strategy {self.name} has shape {arr.shape} for {n} "
                                        "bars", f"return one value per bar, shape ({n},), NaN during warm-up")
            out[str(key)] = arr.tolist()
        return out

    def on_bar(self, bar: Bar, position: PositionView) -> Signal | None:
        """The user's decision, checked.

        Raises:
            StrategyCodeError: the user's ``on_bar`` raised, or answered something other than
                ``None`` or a ``Signal`` with a target in [0, 1].
        """
        try:
            signal = self._on_bar(bar, position)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code (sys.exit too)
            when = datetime.fromtimestamp(bar.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            raise self._failure("on_bar", exc, f"{bar.symbol} bar {when} UTC") from None
        if signal is None:
            return None
        if signal.__class__ is not Signal or not 0.0 <= signal.target <= 1.0:
            raise StrategyCodeError(f"on_bar() of strategy {self.name} returned {signal!r}",
                                    "return None or Signal(target, reason) with a target from 0.0 (flat) "
                                    "to 1.0 (fully long)")
        return signal

    def params(self) -> dict[str, object]:
        """Name, warm-up, source (and the file's sha256) and parameter values, for the ledger."""
        return {"name": self.name, "warmup": self.warmup, "history": self.history, "kind": self.source.kind,
                "spec": self.source.spec, "source": self.source.where, "sha256": self.source.sha256,
                "class": f"{type(self.inner).__module__}.{type(self.inner).__qualname__}",
                "params": self.param_values}

    def _failure(self, method: str, exc: BaseException, context: str) -> StrategyCodeError:
        return StrategyCodeError(
            f"strategy {self.name} raised {type(exc).__name__} in {method}() ({context}): {exc}",
            "the traceback above is from the strategy's own code: fix it, then try it with "
            "`sigmax strategy check SPEC --data PATH`",
            details=user_traceback(exc))


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback without the leading frames of sigmax itself (the user's code and
    what it called, e.g. numpy), formatted as Python prints it."""
    frames = traceback.extract_tb(exc.__traceback__)
    k = 0
    while k < len(frames) - 1 and frames[k].filename.startswith(_PACKAGE_DIR):
        k += 1
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[k:]),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines)
