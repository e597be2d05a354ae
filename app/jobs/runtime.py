"""What a running job reaches: the worker's ServiceContext, set once when the worker starts.

procrastinate tasks receive only their (id) arguments; the engine, vault and provider
client they need come from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.context import ServiceContext


@dataclass
class Runtime:
    ctx: ServiceContext | None = None

    def require(self) -> ServiceContext:
        if self.ctx is None:
            raise RuntimeError("the worker's ServiceContext is not set")
        return self.ctx


RUNTIME = Runtime()
