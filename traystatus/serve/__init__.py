"""``traystatus serve``: one database connection, status for every client over WebSocket/HTTP.

hub.py (fan-out, no network), auth.py (tokens, JWTs, origins; pure), app.py (aiohttp
endpoints and the web page), server.py (start-up checks, run, SIGTERM). The CLI front end
is traystatus/cli/servecmd.py. docs/serve.md tells how to run it.
"""
