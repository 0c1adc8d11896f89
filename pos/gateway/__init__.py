"""Gateway protocols. Each returns the same typed results (see results.py)."""
