"""Package data: the answer vocabularies and question types of the supported datasets.

``music_avqa.json`` and ``avqa.json`` hold ``{"dataset", "source", "answers", "types",
"groups"}``; read them through :func:`qa.annotations.vocabulary_for`.
"""
