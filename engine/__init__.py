"""dest-engine: declarative audience activation into SaaS destinations."""

from engine.pipeline import render_template

__all__ = ["render_template"]
