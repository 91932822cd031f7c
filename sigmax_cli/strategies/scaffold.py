"""``sigmax strategy new NAME``: a documented strategy file that runs as it is written.

The template is an SMA crossover (long while the fast simple moving average of the close is
above the slow one), the same example the README documents.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from sigmax_cli.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

TEMPLATE = '''"""{name}: a sigmax strategy (written by `sigmax strategy new {name}`).

Run it:    sigmax paper --data DIR --timeframe 1h --strategy {file}:{cls}
Check it:  sigmax strategy check {file}:{cls} --data DIR   (look-ahead and warm-up)
Tune it:   in the profile,  [strategy.{name}]  fast = 20  slow = 100
           or SIGMAX_STRATEGY__{upper}__FAST=20

The API (README, "Your own strategy"):
* features(candles) is called once per symbol with every bar of a replay (live: a rolling
  window); candles.open/high/low/close/volume are float64 numpy arrays of shape (n,),
  candles.ts int64 open times in UTC ms. Return {{name: one float per bar}} (numpy, list,
  pandas Series; NaN while not yet defined). Value i may use bars 0..i ONLY: never a later bar
  (`sigmax strategy check` proves it).
* warmup: bars of history on_bar needs; on_bar is first called on bar index `warmup`.
* on_bar(bar, position) is called on every closed bar: bar.close, bar.i (this bar's index in
  the feature lists), bar.features[name][bar.i]; position.qty (base units, 0 when flat),
  position.avg_price. Return Signal(target, reason) with target 0.0 (flat) .. 1.0 (fully
  long, i.e. the profile's position_fraction of equity), or None to keep the position.
* Params: the parameters with their defaults; the profile's [strategy.{name}] table
  overrides them and is validated against these types; the values are recorded with each run.
"""

from dataclasses import dataclass

import numpy as np

from sigmax_cli.strategies import BaseStrategy, Signal


def sma(x: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average, shape (n,); NaN for the first period - 1 bars (causal)."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] >= period:
        csum = np.cumsum(np.concatenate(([0.0], x)))
        out[period - 1:] = (csum[period:] - csum[:-period]) / period
    return out


class {cls}(BaseStrategy):
    """Long while SMA(fast) of the close is above SMA(slow), flat otherwise."""

    name = "{name}"

    @dataclass(frozen=True)
    class Params:
        fast: int = 10   # bars
        slow: int = 40   # bars

        def __post_init__(self) -> None:
            if not 1 <= self.fast < self.slow:
                raise ValueError("fast must be at least 1 and shorter than slow")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.warmup = self.p.slow  # SMA(slow) is defined from bar slow - 1; one more for the crossing

    def features(self, candles):
        return {{"fast": sma(candles.close, self.p.fast), "slow": sma(candles.close, self.p.slow)}}

    def on_bar(self, bar, position):
        f, i = bar.features, bar.i
        above = f["fast"][i] > f["slow"][i]
        was_above = f["fast"][i - 1] > f["slow"][i - 1]
        if position.qty == 0.0 and above and not was_above:
            return Signal(1.0, "sma fast crossed above slow")
        if position.qty > 0.0 and not above:
            return Signal(0.0, "sma fast below slow")
        return None
'''


def class_name(name: str) -> str:
    """``sma_cross`` -> ``SmaCross``."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def render(name: str, file: str) -> str:
    """The template for strategy ``name`` written to ``file`` (used in its usage lines)."""
    return TEMPLATE.format(name=name, cls=class_name(name), upper=name.upper(), file=file)


def write_template(name: str, directory: Path) -> Path:
    """Write ``directory/NAME.py`` from the template; never overwrites.

    Args:
        name: the strategy's name: lower-case letters, digits and ``_``, starting with a letter.
        directory: where to write it (must exist).

    Returns:
        The path written.

    Raises:
        ConfigError: a bad name, a missing directory, or the file exists already.
    """
    if not _NAME_RE.match(name):
        raise ConfigError(f"strategy name {name!r} is not a lower-case identifier",
                          "use letters, digits and '_', starting with a letter, e.g. sma_cross")
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"directory {directory} does not exist", "create it or pass another --dir")
    path = directory / f"{name}.py"
    text = render(name, str(path))
    if path.exists():
        raise ConfigError(f"{path} exists already", "pick another name or move that file away")
    try:  # complete file under a temporary name, then a hard link: never half-written, never overwriting
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
    except FileExistsError:
        raise ConfigError(f"{path} exists already", "pick another name or move that file away") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror})", "check the directory's permissions and free "
                          "space") from None
    return path
