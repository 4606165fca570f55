"""The built-in search spaces (YAML), installed as the package ``gkd_search.search_spaces``
(``pyproject.toml`` maps it to this top-level folder, so the wheel ships them)."""
