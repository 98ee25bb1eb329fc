"""Getting driftctl onto hosts: the zipapp (``build``) and the catalog that installs it with its pull
schedule over SSH, or removes it (``install``)."""

from __future__ import annotations
