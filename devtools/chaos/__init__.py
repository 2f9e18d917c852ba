"""Chaos runs: real load on the whole system while processes are killed, the servers are
restarted and poison is injected, then an exactly-once audit of every effect.

``python -m devtools.chaos --applications N --rate R --seed S [--long]`` (``make chaos``).
"""
