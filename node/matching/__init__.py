"""Private matching on the node: the holder's published table, the querier's probes.

The protocol's mathematics is in :mod:`federation.matching`; this package keeps tables on
disk, spreads the heavy work over a process pool, and enforces quotas, replay protection and
audit (docs/private-matching.md).
"""
