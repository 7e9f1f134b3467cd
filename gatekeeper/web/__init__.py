"""The web: status, build history, logs, nodes and metrics, read-only unless
an operator authenticates. Starlette (ASGI) served by uvicorn; pages are
rendered on the server with Jinja2 (autoescaped) and carry a little
JavaScript of our own, loaded from ``static/`` (the Content-Security-Policy
allows no inline script).

``app.make_app`` assembles the routes of the page modules beside it; each
module owns one part of the site and exposes ``routes(ctx)``.
"""
