"""What sigmax publishes for monitoring (:mod:`.metrics`, the one catalogue of metric names)
and what is generated from it for Prometheus and Grafana (:mod:`.export`)."""
