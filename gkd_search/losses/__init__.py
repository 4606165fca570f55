"""Built-in structural losses (each module is a plugin)."""
