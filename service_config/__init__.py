"""Typed settings that the service processes share (API, workers, the CLI's commands): the store
they open (``StoreSettings``, with each role's default) and the limits of image fetching
(``FetchSettings``). Each role's own settings class (api/settings.py, worker/settings.py,
clik_cli/settings.py) mixes these in, so a ``CLIK_*`` name means the same thing in every process.

It may import ``clik`` (fetch limits) and ``indexer`` (store contracts); the roles import it.
"""
