"""The cross-border back office over the v1 API: customs declarations and merchant registration.

customs.py (`pos customs`, the till's declarations), registration.py and
store_file.py (`pos merchant`, the store's registration file, the sales gate).
Journal first: every request id is committed (pos/journal/backoffice.py)
before the call that carries it.
"""
