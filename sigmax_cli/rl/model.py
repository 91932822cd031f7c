"""RL model files: the stable-baselines3 zip and its metadata JSON, written and read safely.

A trained model is two files side by side::

    models/btc.zip    stable-baselines3's archive (``model.save``): weights, optimiser, settings
    models/btc.json   sigmax metadata (:class:`ModelMetadata`): features, window, timeframe,
                      symbol, data file sha256, split dates, seed, hyperparameters, costs,
                      normalisation statistics, library versions, metrics, and the zip's sha256

Writing (:func:`write_model`): both files are first written under temporary names in the
target directory and then renamed into place (``os.replace``), zip first, so a crash
never leaves a half-written file; a zip whose metadata was not renamed yet is refused by
the sha256 check.

Reading for trading (:func:`load_model`) never unpickles anything from the zip: the
metadata says which policy class and network shape to build, and only the tensors of
``policy.pth`` are read, with ``torch.load(weights_only=True)`` (stable-baselines3's
``load_from_zip_file(load_data=False)``). Every way a model can be unusable ends in a
:class:`~sigmax_cli.errors.ConfigError` of one sentence: missing file, not a zip, a zip
that is not a stable-baselines3 model, missing or malformed metadata, metadata of another
zip (sha256), weights that do not fit the metadata's window and features, and (at
:func:`check_compatible`) data of another symbol, timeframe or feature set.

torch and stable-baselines3 are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
import zipfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sigmax_cli.errors import ConfigError, DataError
from sigmax_cli.rl.env import ACTIONS
from sigmax_cli.rl.features import KNOWN_FEATURES, FeatureSpec, Normalizer
from sigmax_cli.rl.observation import STATE_FEATURES, observation_size, observation_space

FORMAT = "sigmax-rl/1"
SB3_ENTRIES = ("data", "policy.pth")
ALGOS = ("ppo", "a2c", "dqn")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class FeaturesMeta(_Model):
    names: list[str] = Field(min_length=1)
    params: dict[str, int]


class NormalizationMeta(_Model):
    mean: list[float]
    std: list[float]
    clip: float = Field(gt=0)


class PolicyMeta(_Model):
    net_arch: list[int] | dict[str, list[int]]


class FileMeta(_Model):
    """A data file the model was trained on: path, sha256, bars, first/last bar (UTC ms)."""

    path: str
    sha256: str
    bars: int = Field(ge=0)
    first_ms: int
    last_ms: int


class SplitPart(_Model):
    """One chronological part: first and last bar open time (UTC ms) and its bars."""

    start_ms: int
    end_ms: int
    bars: int = Field(ge=1)


class SplitMeta(_Model):
    train: SplitPart
    validation: SplitPart
    test: SplitPart
    eval_fraction: float
    test_fraction: float


class ModelMetadata(_Model):
    """The metadata JSON of a model (see the module docstring). Money in quote currency,
    times UTC ms, fees as fractions, slippage in basis points."""

    format: Literal["sigmax-rl/1"]
    algo: Literal["ppo", "a2c", "dqn"]
    symbol: str
    timeframe: str
    window: int = Field(ge=1)
    features: FeaturesMeta
    state_features: list[str]
    actions: list[str]
    observation_size: int
    normalization: NormalizationMeta
    policy: PolicyMeta
    data: FileMeta
    sentiment: FileMeta | None = None
    split: SplitMeta
    seed: int
    hyperparameters: dict[str, Any]
    costs: dict[str, float]
    initial_equity: float = Field(gt=0)
    timesteps: int = Field(ge=0)
    versions: dict[str, str]
    metrics: dict[str, Any]
    model_sha256: str
    created_ms: int

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.features.model_dump())


def metadata_path(model_path: Path) -> Path:
    """``models/btc.zip`` -> ``models/btc.json``."""
    return Path(model_path).with_suffix(".json")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a model depends on."""
    out = {"python": platform.python_version()}
    for dist in ("sigmax", "stable-baselines3", "torch", "gymnasium", "numpy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - installed together
            out[dist] = "unknown"
    return out


def sha256_of(path: Path) -> str:
    from sigmax_cli.data.candles import sha256_file

    return sha256_file(Path(path))


def write_model(model: Any, metadata: dict[str, Any], out: Path) -> ModelMetadata:
    """Save ``model`` (a stable-baselines3 algorithm) to ``out`` and its metadata beside it.

    ``metadata`` is completed with ``model_sha256`` and validated before anything is
    renamed into place (temp files + ``os.replace``, zip first).

    Raises:
        ConfigError: the output directory cannot be written.
    """
    out = Path(out)
    tag = uuid.uuid4().hex[:8]
    tmp_zip = out.parent / f".{out.stem}.{tag}.tmp.zip"
    tmp_json = out.parent / f".{out.stem}.{tag}.tmp.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(tmp_zip))
        meta = ModelMetadata.model_validate({**metadata, "model_sha256": sha256_of(tmp_zip)})
        _write_json(tmp_json, meta.model_dump(mode="json"))
        os.replace(tmp_zip, out)
        os.replace(tmp_json, metadata_path(out))
    except OSError as exc:
        raise ConfigError(f"cannot write the model to {out} ({exc.strerror or exc})",
                          "check --out and the directory's permissions") from None
    finally:
        for tmp in (tmp_zip, tmp_json):
            tmp.unlink(missing_ok=True)
    return meta


def _write_json(path: Path, document: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metadata(model_path: Path) -> ModelMetadata:
    """Check ``model_path`` is a sigmax RL model and return its metadata; loads no weights.

    Raises:
        ConfigError: missing file, not a zip, not a stable-baselines3 zip, metadata
            missing, unreadable, malformed, inconsistent, or belonging to another zip.
    """
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"RL model {path} does not exist", "train one with `sigmax train-rl` or check the path")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"RL model {path} is not a zip archive (corrupt or not a model)",
                          "pass the .zip written by `sigmax train-rl`")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ConfigError(f"RL model {path} is a damaged zip archive ({exc})", "train the model again") from None
    if bad is not None:
        raise ConfigError(f"RL model {path} is a damaged zip archive ({bad} fails its checksum)",
                          "train the model again")
    if not set(SB3_ENTRIES) <= names:
        raise ConfigError(f"{path} is a zip archive but not a stable-baselines3 model (no policy weights in it)",
                          "pass the .zip written by `sigmax train-rl`")
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise ConfigError(f"RL model {path} has no metadata file {meta_file.name} beside it",
                          "keep the .json that `sigmax train-rl` wrote with the model, or train it again")
    try:
        raw = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metadata {meta_file} is not readable JSON ({exc})", "train the model again") from None
    try:
        meta = ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise ConfigError(f"metadata {meta_file} is not sigmax RL metadata ({where}: {err['msg']})",
                          "keep the .json that `sigmax train-rl` wrote with the model, or train it again") from None
    _check_consistent(meta, meta_file)
    if sha256_of(path) != meta.model_sha256:
        raise ConfigError(f"metadata {meta_file.name} belongs to another model than {path.name} (sha256 differs)",
                          "keep each model zip with the .json written with it, or train it again")
    return meta


def _check_consistent(meta: ModelMetadata, where: Path) -> None:
    try:
        spec = meta.spec
        Normalizer.from_dict(meta.normalization.model_dump(), len(spec.names))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"metadata {where} has unusable features or normalisation ({exc})",
                          "train the model again") from None
    expected = observation_size(meta.window, len(spec.names))
    if (meta.observation_size != expected or tuple(meta.state_features) != STATE_FEATURES
            or tuple(meta.actions) != ACTIONS):
        raise ConfigError(f"metadata {where} describes observations or actions this sigmax does not build "
                          f"({meta.observation_size} values, expected {expected} for a {meta.window}-bar window "
                          f"of {len(spec.names)} features)", "train the model again with this version")
    unknown = [n for n in spec.names if n not in KNOWN_FEATURES]
    if unknown:  # pragma: no cover - FeatureSpec refuses them first
        raise ConfigError(f"metadata {where} names unknown features {unknown}", "train the model again")


@dataclass
class LoadedModel:
    """A model ready to trade: its metadata, features, normalisation and a predictor."""

    path: Path
    meta: ModelMetadata
    spec: FeatureSpec
    normalizer: Normalizer
    predictor: Predictor


class Predictor:
    """Deterministic actions of a stable-baselines3 policy, computed in numpy.

    The policy's action path is copied out of torch once: for PPO/A2C the actor network
    (``mlp_extractor.policy_net``, then ``action_net``: the argmax of the logits is the
    deterministic action of the categorical distribution), for DQN the Q-network
    (``q_net.q_net``: argmax of the Q-values). Linear layers become ``x @ W.T + b`` in
    float32, ``Tanh``/``ReLU`` their numpy forms. One call costs tens of microseconds
    instead of the ~0.3 ms of a torch forward for a single observation
    (``benchmarks/rl_throughput.py``); ``tests/test_rl_model.py`` checks the actions equal
    stable-baselines3's ``predict``.

    ``__call__(obs)`` with ``obs`` of shape ``(D,)`` float32 returns an action index (see
    :data:`~sigmax_cli.rl.env.ACTIONS`); ``batch(obs)`` with shape ``(m, D)`` returns ``(m,)``.

    Raises:
        ValueError: the policy holds a layer other than Linear, Tanh or ReLU.
    """

    def __init__(self, policy: Any) -> None:
        import torch.nn as nn

        if hasattr(policy, "q_net"):
            modules = list(policy.q_net.q_net)
        else:
            modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        self.layers: list[tuple[str, Any, Any]] = []
        for module in modules:
            if isinstance(module, nn.Linear):
                weight = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
                bias = module.bias.detach().cpu().numpy().astype(np.float32).copy()
                self.layers.append(("linear", weight, bias))
            elif isinstance(module, nn.Tanh):
                self.layers.append(("tanh", None, None))
            elif isinstance(module, nn.ReLU):
                self.layers.append(("relu", None, None))
            else:
                raise ValueError(f"unsupported layer {type(module).__name__}")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        for kind, weight, bias in self.layers:
            if kind == "linear":
                x = x @ weight
                x += bias
            elif kind == "tanh":
                np.tanh(x, out=x)
            else:
                np.maximum(x, 0.0, out=x)
        return x

    def __call__(self, obs: np.ndarray) -> int:
        return int(self._forward(np.asarray(obs, dtype=np.float32)).argmax())

    def batch(self, obs: np.ndarray) -> np.ndarray:
        return self._forward(np.asarray(obs, dtype=np.float32)).argmax(axis=1)


def build_policy(algo: str, window: int, n_features: int, clip: float, net_arch: Any) -> Any:
    """An untrained policy of the shape the metadata describes (stable-baselines3 class
    ``ActorCriticPolicy`` for PPO/A2C, ``DQNPolicy`` for DQN), on the CPU."""
    from gymnasium import spaces

    obs_space = observation_space(window, n_features, clip)
    act_space = spaces.Discrete(len(ACTIONS))
    if algo == "dqn":
        from stable_baselines3.dqn.policies import DQNPolicy

        return DQNPolicy(obs_space, act_space, lr_schedule=_zero, net_arch=net_arch)
    from stable_baselines3.common.policies import ActorCriticPolicy

    return ActorCriticPolicy(obs_space, act_space, lr_schedule=_zero, net_arch=net_arch)


def _zero(_progress: float) -> float:
    return 0.0


def load_model(model_path: Path) -> LoadedModel:
    """Read and check a model (see :func:`read_metadata`) and load its policy weights only.

    Args:
        model_path: the model zip.

    Raises:
        ConfigError: see :func:`read_metadata`; weights that do not fit the metadata.
    """
    meta = read_metadata(model_path)
    try:
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError:
        raise ConfigError("RL strategies need torch and stable-baselines3, which are not installed",
                          "install them with `pip install torch==2.13.0` then `pip install -e '.[rl]'`") from None
    spec = meta.spec
    normalizer = Normalizer.from_dict(meta.normalization.model_dump(), len(spec.names))
    path = Path(model_path).expanduser()
    try:
        _, params, _ = load_from_zip_file(path, load_data=False, device="cpu")
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/zip errors for damaged weights
        raise ConfigError(f"RL model {path} holds unreadable weights ({type(exc).__name__})",
                          "train the model again") from None
    policy = build_policy(meta.algo, meta.window, len(spec.names), normalizer.clip,
                          meta.policy.net_arch if not isinstance(meta.policy.net_arch, dict)
                          else dict(meta.policy.net_arch))
    try:
        policy.load_state_dict(params["policy"], strict=True)
    except (KeyError, RuntimeError):
        raise ConfigError(f"the weights in {path.name} do not fit its metadata ({meta.window}-bar window of "
                          f"{len(spec.names)} features, {meta.algo})",
                          "keep each model zip with the .json written with it, or train it again") from None
    try:
        predictor = Predictor(policy)
    except ValueError as exc:  # pragma: no cover - we build the policy ourselves
        raise ConfigError(f"RL model {path.name} has a network sigmax cannot run ({exc})", "train it again") from None
    return LoadedModel(path, meta, spec, normalizer, predictor)


def check_compatible(meta: ModelMetadata, *, timeframe: str, spec: FeatureSpec | None = None,
                     bars: int | None = None, symbol: str | None = None, allow_other_symbol: bool = False) -> None:
    """Refuse data the model was not trained for.

    Args:
        timeframe: the data's bar length (e.g. ``"1h"``).
        spec: the feature set the caller computes; ``None`` = the model's own.
        bars: number of bars available; must cover the features' warm-up and one window.
        symbol: the data's symbol (e.g. ``"ETH/USDT"``); ``None`` = not checked.
        allow_other_symbol: accept a ``symbol`` other than the model's (``--allow-other-symbol``,
            ``rl.allow_other_symbol``): its features are normalised with the training symbol's
            statistics, which the user then takes on.

    Raises:
        ConfigError: another symbol (unless allowed), timeframe or feature set.
        DataError: too few bars for the feature warm-up and the window.
    """
    if symbol is not None and symbol != meta.symbol and not allow_other_symbol:
        raise ConfigError(f"the RL model was trained on {meta.symbol} and the data is {symbol}",
                          f"replay {meta.symbol} candles, train a model on {symbol}, or pass --allow-other-symbol "
                          f"(SIGMAX_RL__ALLOW_OTHER_SYMBOL=true) to run it on {symbol} anyway")
    if timeframe != meta.timeframe:
        raise ConfigError(f"the RL model was trained on {meta.timeframe} candles and the data is {timeframe}",
                          f"replay {meta.timeframe} candles (--timeframe {meta.timeframe}) or train a model on "
                          f"{timeframe}")
    own = meta.spec
    if spec is not None and (spec.names != own.names or spec.params != own.params):
        raise ConfigError(f"the RL model reads features {list(own.names)} {own.params} and the data gives "
                          f"{list(spec.names)} {spec.params}", "train a model on these features")
    if bars is not None and bars < own.warmup + meta.window:
        raise DataError(f"the RL model needs {own.warmup + meta.window} bars (a {own.warmup}-bar feature "
                          f"warm-up and a {meta.window}-bar window) and the data has {bars}",
                          "give more history (--start earlier)")
