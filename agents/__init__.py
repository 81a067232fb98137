"""agentlog agents (see ../shared/ARCHITECTURE.md; built in later issues)."""

__all__: list[str] = []
