"""The operations the handler can run, by publicSettings.commandToExecute."""
