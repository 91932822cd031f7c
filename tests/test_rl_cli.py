"""`sigmax train-rl` bad input (one sentence, non-zero exit, nothing written), the optional
Fear & Greed feature from training to `paper`, and the rich progress observer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

from tests.conftest import FREQTRADE_1H  # noqa: E402

BTC_1H = FREQTRADE_1H / "BTC_USDT-1h.json"
FNG = "sentiment/alternative_me_fng_limit365_2025-04-22.json"
DAILY = "ohlcv/binance_spot_daily_2017-2025/BTC_USDT-1d.csv"


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")} if path.exists() else set()


BAD_INPUT = [
    (["--timesteps", "0"], 2, "error: --timesteps must be at least 1, not 0; pass e.g. --timesteps 100000.\n"),
    (["--start", "2021-01-01", "--end", "2021-01-08"], 65,
     "error: BTC/USDT 1h has 104 usable bars after the 33-bar feature warm-up and the 32-bar window, too few for a "
     "train/validation/test split of at least 48 steps each (about 245 are needed); give more data (an earlier "
     "--start), a smaller --window or larger --eval-fraction/--test-fraction.\n"),
    (["--timeframe", "5m"], 65,
     "error: BTC_USDT-1h.json holds 1h candles, not 5m; pass --timeframe 1h or a 5m file.\n"),
    (["--symbol", "ETH/USDT"], 65, "error: BTC_USDT-1h.json holds BTC/USDT, not ETH/USDT; pass --symbol BTC/USDT or "
     "another file.\n"),
    (["--eval-fraction", "1.5"], 2, "error: --eval-fraction 1.5 is not a fraction between 0 and 1; pass e.g. "
     "--eval-fraction 0.2.\n"),
    (["--eval-fraction", "0.5", "--test-fraction", "0.4"], 2, "error: --eval-fraction and --test-fraction leave 10% "
     "of the data for training; keep their sum at 0.8 or less.\n"),
    (["--algo", "sac"], 2, "error: unknown algorithm 'sac'; use one of ppo, a2c, dqn.\n"),
    (["--n-envs", "0"], 2, "error: --n-envs must be between 1 and 64, not 0; pass e.g. --n-envs 4.\n"),
    (["--batch-size", "4096"], 2, "error: --batch-size 4096 is larger than a rollout of 2048 steps x 1 environments; "
     "lower --batch-size or raise --n-steps / --n-envs.\n"),
    (["--window", "1"], 2, "error: --window must be between 2 and 512 bars, not 1; pass e.g. --window 32.\n"),
    (["--out", "model.pkl"], 2, "error: --out model.pkl must end in .zip; pass e.g. --out model.zip.\n"),
    (["--resume"], 2, None),
    (["--start", "2021-13-01"], 2, "error: --start '2021-13-01' is not a date; use ISO format, e.g. 2021-05-12 or "
     "2021-05-12T06:00.\n"),
    (["--sentiment", "@FNG"], 65, "error: the sentiment file covers 2024-04-22 00:00 UTC to 2025-04-22 00:00 UTC, none "
     "of the candles' 2020-12-01 00:00 UTC to 2021-07-17 20:00 UTC; use a sentiment file of the same period or cut "
     "the candles with --start/--end.\n"),
    (["--sentiment", "missing.json"], 65, "error: sentiment file missing.json does not exist; pass a saved "
     "alternative.me /fng/ answer.\n"),
]


@pytest.mark.parametrize("args,code,message", BAD_INPUT, ids=[" ".join(a[0][:1] + a[0][1:2]) for a in BAD_INPUT])
def test_bad_input_is_one_sentence_a_non_zero_exit_and_nothing_written(cli, tmp_path, data_dir, args, code, message):
    args = [str(data_dir / FNG) if a == "@FNG" else a for a in args]
    before = files_under(tmp_path)
    result = cli("train-rl", "--data", BTC_1H, *args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    if message is not None:
        assert result.stderr == message
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path) == before  # no model, no metadata, no checkpoint, no home


def test_missing_or_corrupt_data_file(cli, tmp_path):
    result = cli("train-rl", "--data", tmp_path / "BTC_USDT-1h.json")
    assert result.exit_code == 65
    assert result.stderr == (f"error: data path {tmp_path / 'BTC_USDT-1h.json'} does not exist; pass a candle file "
                             "or a directory of them.\n")
    broken = tmp_path / "BTC_USDT-1h.json"
    broken.write_text('[[1609459200000, 1, 2, 0.5, 1.5, 10], [1609462800000, 1')
    before = files_under(tmp_path)
    result = cli("train-rl", "--data", broken)
    assert result.exit_code == 65 and "is corrupt or not OHLCV" in result.stderr
    assert files_under(tmp_path) == before


def test_an_existing_model_is_not_replaced_without_force(cli, tmp_path):
    out = tmp_path / "models" / "keep.zip"
    out.parent.mkdir()
    out.write_bytes(b"precious")
    result = cli("train-rl", "--data", BTC_1H, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"error: model {out} already exists; pass --force to replace it or choose another --out.\n"
    assert out.read_bytes() == b"precious" and sorted(p.name for p in out.parent.iterdir()) == ["keep.zip"]


def test_too_little_data_is_reported_before_an_existing_model(cli, tmp_path):
    out = tmp_path / "keep.zip"
    out.write_bytes(b"precious")
    result = cli("train-rl", "--data", BTC_1H, "--start", "2021-01-01", "--end", "2021-01-08", "--out", out)
    assert result.exit_code == 65
    assert "has 104 usable bars after the 33-bar feature warm-up" in result.stderr
    assert "already exists" not in result.stderr and out.read_bytes() == b"precious"


def test_an_unreadable_markets_file_for_the_paper_replay_stops_train_rl_before_training(cli, tmp_path):
    markets = tmp_path / "markets.json"
    markets.write_text("{not json")
    before = files_under(tmp_path)
    result = cli("train-rl", "--data", BTC_1H, "--out", tmp_path / "m.zip", env={"SIGMAX_MARKETS_FILE": str(markets)})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and str(markets) in result.stderr and "training" not in result.stdout
    assert files_under(tmp_path) == before


def test_text_output_names_both_test_tables_and_the_replay_command(cli, tmp_path):
    out = tmp_path / "tiny.zip"
    result = cli("--profile", "balanced", "train-rl", "--data", BTC_1H, "--start", "2021-01-01", "--end", "2021-03-01",
                 "--timesteps", "256", "--n-steps", "128", "--window", "8", "--episode-bars", "64", "--eval-every",
                 "128", "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # titles and captions wrap on narrow terminals
    assert "in the training environment" in text
    assert "environment: the whole balance in every position, no risk guard" in text
    assert "replayed through the paper engine" in text
    assert "paper engine: profile balanced, 10 % of equity per position, the profile's risk guard" in text
    assert (f"replay the test part: sigmax paper --data {BTC_1H} --start 2021-02-17T13:00 --end 2021-03-01T00:00 "
            f"--strategy rl:{out}") in text


def test_fear_and_greed_model_trains_and_trades_in_paper_with_its_sentiment_file(cli, tmp_path, data_dir):
    out = tmp_path / "fng.zip"
    result = cli("train-rl", "--data", data_dir / DAILY, "--sentiment", data_dir / FNG, "--start", "2024-03-01",
                 "--timesteps", "256", "--n-steps", "64", "--batch-size", "32", "--window", "8",
                 "--episode-bars", "64", "--eval-every", "128", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["features"] == ["log_return", "rsi", "macd_hist", "volume_z", "fear_greed"]
    assert summary["timeframe"] == "1d" and summary["symbol"] == "BTC/USDT"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["sentiment"]["path"] == str((data_dir / FNG).resolve()) and len(meta["sentiment"]["sha256"]) == 64
    # the split starts once Fear & Greed values exist (2024-04-22) plus the 8-bar window
    assert meta["split"]["train"]["start_ms"] == 1713744000000 + 7 * 86_400_000
    paper = cli("paper", "--data", data_dir / DAILY, "--strategy", f"rl:{out}", "--start", "2025-01-01",
                "--no-tui", "--json")
    assert paper.exit_code == 0, paper.output
    assert json.loads(paper.stdout)["bars"] == 106  # 2025-01-01 .. 2025-04-16
    missing = cli("paper", "--data", data_dir / DAILY, "--strategy", f"rl:{out}", "--no-tui",
                  env={"SIGMAX_RL__SENTIMENT_FILE": str(tmp_path / "gone.json")})
    assert missing.exit_code == 2
    assert missing.stderr == (f"error: the RL model fng.zip reads the fear_greed series and its sentiment file "
                              f"{tmp_path / 'gone.json'} is not there; point SIGMAX_RL__SENTIMENT_FILE at a saved "
                              "alternative.me /fng/ answer.\n")


def test_progress_observers_render_steps_evaluations_and_stages():
    import io

    from rich.console import Console

    from sigmax_cli.rl.progress import PlainTrainProgress, RichTrainProgress

    console = Console(file=io.StringIO(), record=True, width=120, force_terminal=False)
    with RichTrainProgress(console) as bar:
        bar.on_start(2048, 0)
        bar.on_progress(1024, 2048)
        bar.on_eval(1024, 3.25, 4.5)
        bar.on_stage("testing")
        bar.on_finish()
    text = console.export_text()
    assert "1024/2048" in text and "validation +3.25% (best +4.50%)" in text and "testing" in text
    lines = io.StringIO()
    plain = PlainTrainProgress(lines)
    plain.on_start(1000, 0)
    for done in range(0, 1001, 50):
        plain.on_progress(done, 1000)
    plain.on_eval(500, -1.0, 2.0)
    out = lines.getvalue().splitlines()
    assert out[0] == "training 1,000 steps"
    assert sum(1 for line in out if line.startswith("step ") and "/1,000 (" in line) == 10
    assert "step 500: validation return -1.00% (best +2.00%)" in out
    # whole rollouts end past the budget, and a resumed run starts part-way: never past 100 %
    lines = io.StringIO()
    resumed = PlainTrainProgress(lines)
    resumed.on_start(1024, 640)
    resumed.on_progress(1280, 1024)
    assert lines.getvalue().splitlines() == ["training 1,024 steps, resuming at 640",
                                             "step 1,024/1,024 (100%) after 0 s"]


def test_train_rl_help_lists_the_documented_options(cli):
    result = cli("train-rl", "--help")
    assert result.exit_code == 0
    for option in ("--data", "--symbol", "--timeframe", "--timesteps", "--seed", "--out", "--eval-fraction",
                   "--n-envs", "--json", "--algo", "--resume"):
        assert option in result.stdout
    assert os.environ.get("SIGMAX_HOME")  # isolated home from the fixture
