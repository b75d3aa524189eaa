"""Front end: torch module → OpGraph (capture), the model zoo and seeded synthetic CNNs."""

from .capture import UnsupportedOperator, trace

__all__ = ["UnsupportedOperator", "trace"]
