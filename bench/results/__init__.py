"""The contract between a run and its readers: the typed record (record.py) and its written schema with migrations
(schema.py), the predictions file's layout (predictions.py), the metrics both sides compute (metrics.py) and atomic
writes (io.py). The engine writes through it, the store keeps what it writes, the leaderboard and the CLI read it;
this package imports none of them."""
