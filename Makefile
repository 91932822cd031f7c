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

# The main job: download real Binance 1h candles (public API, no keys), replay them on paper. When the
# exchange cannot be reached (the download exits 69: no network, a firewall, an outage), say so in one line and
# replay the real Binance sample bundled with sigmax instead. Any other failure (exit 2 bad option, 65 bad data,
# ...) stops here with the download's own message and exit code.
paper: install
	@exec 3>&1; \
	err=$$(sigmax data download --exchange binance --symbols $(SYMBOLS) --timeframe 1h --since $(SINCE) \
	       --out $(DATA_DIR) 2>&1 1>&3); rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	    if [ -n "$$err" ]; then printf '%s\n' "$$err" >&2; fi; \
	    sigmax paper --data $(DATA_DIR) --symbols $(SYMBOLS) --timeframe 1h; \
	elif [ $$rc -eq 69 ]; then \
	    echo "cannot reach binance (offline?), so this run replays the real Binance 1h sample bundled with sigmax instead: sigmax paper --data sample"; \
	    sigmax paper --data sample --symbols $(SYMBOLS) --timeframe 1h; \
	else \
	    printf '%s\n' "$$err" >&2; exit $$rc; \
	fi

# The same replay offline, on the freqtrade-layout candles beside the checkout.
paper-offline: install
	sigmax paper --data ../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07 --timeframe 1h

test: install-rl
	$(PYTHON) -m pytest -q

lint: install-dev
	$(PYTHON) -m ruff check sigmax_cli commands tests benchmarks
	$(PYTHON) -m mypy

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
