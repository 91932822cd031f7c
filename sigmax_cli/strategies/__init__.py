"""Strategies: the :class:`~sigmax_cli.strategies.base.Strategy` interface, the rule strategy
and user strategies (``PATH.py:ClassName``, ``package.module:ClassName`` or the name of an
installed plugin, entry-point group ``sigmax.strategies``; see :mod:`sigmax_cli.strategies.user`).

The factory of ``--strategy`` values (including ``rl:MODEL.zip``, which lives in
:mod:`sigmax_cli.rl`, a package above this one) is :func:`sigmax_cli.strategy_spec.load_strategy`.

What a user strategy file imports lives here: ``from sigmax_cli.strategies import
BaseStrategy, Signal`` (also ``Bar``, ``Candles``, ``PositionView``, ``indicators``).
"""

from __future__ import annotations

from sigmax_cli.data.candles import Candles
from sigmax_cli.model import Bar
from sigmax_cli.strategies import indicators
from sigmax_cli.strategies.base import PositionView, Signal, Strategy
from sigmax_cli.strategies.user import BaseStrategy

__all__ = ["Bar", "BaseStrategy", "Candles", "PositionView", "Signal", "Strategy", "indicators"]
