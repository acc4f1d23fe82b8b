"""Offline data in exactly the release formats: `python -m lra.generate --task=... --out=DIR`.

listops: the LRA ListOps generator. pathfinder: the Pathfinder / Path-X snakes generator (32, 64,
128, 256 px). standins: Text, Retrieval and Image stand-ins (pipeline tests, not the benchmark).
The readers in lra.data read what these write.
"""
