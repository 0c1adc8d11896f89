"""The chain's headquarters: every terminal's events in PostgreSQL, chain-wide views (README "The chain")."""
