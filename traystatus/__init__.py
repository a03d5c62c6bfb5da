"""traystatus: is the StatBus register stable, or processing data?"""

__version__ = "0.1.0"
