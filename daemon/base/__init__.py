"""Building blocks with no knowledge of awsd's parts: the bottom layer, importable from anywhere.

- `fields.py` — config field types (`Section`, `Name`, URLs, entrypoints);
- `stop.py` — stop tokens and sleeps that wake on stop; `retry.py` — the one backoff helper;
- `awserrors.py` — the one classification of AWS errors (throttled, transient, refused, denied);
- `redact.py` — secrets kept out of logs and output; `clock.py` — timestamps for people;
- `plugins.py` — loading user code (`package.module:function`) and what it declares it sends.
"""
