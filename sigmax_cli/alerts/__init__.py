"""Alerts: Slack-compatible webhooks, Telegram and e-mail, debounced, recorded in the ledger."""
