"""The synthetic demo dataset (``python cli.py synth``): scenes of instruments that sound and show
over time (:mod:`synth.scene`), their questions and answers (:mod:`synth.questions`), rendered to
mp4 with audio (:mod:`synth.render`, :mod:`synth.avwrite`), planned and written in parallel
(:mod:`synth.generate`).  Used by the demo, the tests and the benchmarks; no torch."""
