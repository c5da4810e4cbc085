"""MQTT ingestion: the edge where device bytes become validated, typed, SI records and are stored.

Only this package (with ``api`` and ``hardware``) touches sockets, topics, bytes and JSON.
"""
