"""Built-in distillation methods (each module is a plugin)."""
