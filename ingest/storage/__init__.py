"""Telemetry storage: one interface (:class:`TelemetryStore`), SQLite and InfluxDB backends."""
