"""Built-in datasets (each module is a plugin)."""
