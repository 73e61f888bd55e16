"""What spans the cities of a credit federation: identifiers, membership and trust.

Everything in this package is plain typed Python, free of gRPC and SQL, so that the
rules can be read, tested and reused without a running node.
"""
