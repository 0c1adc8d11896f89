"""End of day with Alipay: fetch the reconciliation files over SFTP and match them against the journal.

parse.py reads both published formats (reference §16.1 and §16.2) into rows with
exact minor-unit amounts; match.py classifies every row and journal item and
says what the manager should do; report.py writes the result for the screen,
CSV, the receipt printer and the till; fetch.py downloads the files over SFTP;
store.py imports them into the journal and builds a day's report; service.py
holds the steps the CLI, the till and the daemon share; scheduled.py is the
daemon's daily run at [reconcile] fetch_at.
"""
