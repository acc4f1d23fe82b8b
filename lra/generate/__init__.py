"""Offline data in exactly the release formats: `python -m lra.generate --task=... --out=DIR`.

listops: the LRA ListOps generator. The readers in lra.data read what these write.
"""
