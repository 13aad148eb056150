"""recsys: a Ray-native platform from raw e-commerce behaviour logs to autoscaled search and
recommendation on pretrained transformers. Nothing here runs on import."""

__version__ = "0.1.0"
