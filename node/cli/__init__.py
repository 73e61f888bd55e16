"""The ``credit-node`` command line: one module per verb group."""
