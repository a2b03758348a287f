"""Inference on raw videos: a trained run (``train``) applied to a new video decoded and encoded
by the extractor (``extract``) with the encoders of the run's store.  The last stage of the flow:
it may import every other package, and none imports it."""
from .ask import Answer, Asker, AskError, AskSettings, ask

__all__ = ["ask", "Asker", "AskSettings", "AskError", "Answer"]
