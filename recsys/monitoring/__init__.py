"""Monitoring: drift statistics (PSI, KS) and their Prometheus gauges."""
