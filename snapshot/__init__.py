"""VMSnapshot capability: app-consistent disk snapshots for Azure Backup, and restore."""
