"""Built-in model families (each module is a plugin)."""
