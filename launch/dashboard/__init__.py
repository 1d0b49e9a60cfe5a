"""The live view of a run in the browser: `drima-dashboard RUN_DIR` and `drima-launch --dashboard`.
status.py reads the run folder, server.py serves index.html and /status.json (docs/dashboard.md)."""
