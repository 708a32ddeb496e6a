"""The operator's view of a running line: a web page, /metrics, health endpoints and feedback.

state.py (the loop's observer and its snapshots), status.py (what the page, /api/status, /readyz
report), metrics.py (Prometheus), render.py (JPEGs), feedback.py (the MVTec-layout folder),
app.py (routes and access), server.py (the server thread). Started by `edgefreq run --http`
through edgefreq.runtime.service. Needs the `web` extra (aiohttp, prometheus-client).
"""
