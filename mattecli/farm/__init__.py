"""Running one job on many machines: chunks of frames for render farms, and a Ray executor.

The unit of work is a :class:`~mattecli.farm.chunks.Chunk`, an inclusive range of frame numbers.
``mattecli plan`` writes a job's chunks for a farm manager; ``run --chunk K/N`` runs one of them;
``run --executor ray`` hands them to a Ray cluster. A chunk's outputs are the frames a single
machine would write for those numbers, byte for byte, so the pieces add up to the whole run.
"""
