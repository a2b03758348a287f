"""Helpers every package uses, with no knowledge of any of them: configuration from typed
dataclasses (:mod:`common.config`), atomic file writes (:mod:`common.files`), the compute device
(:mod:`common.device`) and the usable CPU cores (:mod:`common.cores`)."""
