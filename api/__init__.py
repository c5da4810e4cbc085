"""HTTP API and web console (issue 5)."""
