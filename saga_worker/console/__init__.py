"""The operator console: `saga-worker console` (saga_worker/cli/web.py) serves it.

`server.py` is the web application (pages and actions), `pages.py` what each page
shows, `reads.py` the overview's figures, `timeline.py` a saga's history as bars,
`security.py` credentials, CSRF and where it may listen. Everything it reads or does
goes through the CLI's operations (saga_worker/cli/operations.py, dlq.py).
"""
