"""driftctl: agentless configuration management that tells you what drifted, how and since when."""

from __future__ import annotations

__version__ = "0.1.0"
