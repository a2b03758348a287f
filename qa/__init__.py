"""Dataset knowledge that neither stage owns: question-answer records, answer vocabularies and
question types, the annotation formats (MUSIC-AVQA, AVQA), and scoring per question type.

Pure Python + numpy: nothing here imports torch, so extraction, training, scoring and the
synthetic-data generator all use it without loading a model library.
"""
