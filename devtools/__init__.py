"""Developer tooling: local Azure Storage (Azurite) for tests, benchmarks and the demo."""
