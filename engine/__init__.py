"""dest-engine: declarative audience activation into SaaS destinations."""
