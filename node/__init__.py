"""The service a city runs: its identity, configuration, storage, gRPC APIs and CLI."""
