# sigmax: make paper (install + a paper run on real candles), make test (install + the whole suite)
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SYMBOLS ?= BTC/USDT,ETH/USDT
SINCE ?= 2024-01-01
DATA_DIR ?= data/binance

.PHONY: install install-dev install-rl paper paper-offline test lint bench

install:
	$(PIP) install -q -e .

install-dev:
	$(PIP) install -q -e ".[dev]"

# torch first, from the CPU wheel, so that stable-baselines3 does not pull a CUDA build
install-rl:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[rl,dev]"

# The main job: download real Binance 1h candles (public API, no keys), replay them on paper.
paper: install
	sigmax data download --exchange binance --symbols $(SYMBOLS) --timeframe 1h --since $(SINCE) --out $(DATA_DIR)
	sigmax paper --data $(DATA_DIR) --symbols $(SYMBOLS) --timeframe 1h

# The same replay offline, on the freqtrade-layout candles beside the checkout.
paper-offline: install
	sigmax paper --data ../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07 --timeframe 1h

test: install-rl
	$(PYTHON) -m pytest -q

lint: install-dev
	$(PYTHON) -m ruff check sigmax_cli commands tests benchmarks

# Each script prints its figures as ratios against a baseline measured in the same run.
# backup_restore.py (1M fills in PostgreSQL) and rl_throughput.py (rl extra) take longer: run them by hand.
bench: install-dev
	$(PYTHON) benchmarks/startup.py
	$(PYTHON) benchmarks/paper_throughput.py
	$(PYTHON) benchmarks/health_latency.py
	$(PYTHON) benchmarks/panic_latency.py
	$(PYTHON) benchmarks/tick_latency.py
	$(PYTHON) benchmarks/research_throughput.py
	$(PYTHON) benchmarks/security_scan.py
