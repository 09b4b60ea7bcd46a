"""``make chaos``: faults against the production stack; nothing accepted may be lost.

See ``tests/chaos/__main__.py``.
"""
