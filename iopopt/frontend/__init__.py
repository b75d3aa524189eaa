"""Front end: torch module → OpGraph (capture), the model zoo and seeded synthetic CNNs."""

from .capture import InputShapeError, UnsupportedOperator, trace

__all__ = ["InputShapeError", "UnsupportedOperator", "trace"]
