"""The heavy core: torch and transformers live here and are imported only inside commands."""
