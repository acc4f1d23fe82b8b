"""Long Range Arena: the tasks' data, their configs and the training job.

`lra.data` reads the tasks (registered in lra.data.specs) from the files users have (the LRA
release, IMDB, CIFAR-10) and feeds the engine through grain; `lra.generate` writes offline data
in exactly those formats; `lra.tasks` is what the engine trains, `lra.configs` builds the
configs, `python -m lra.main` trains, `lra.report` tabulates runs beside `lra.published`.
"""
