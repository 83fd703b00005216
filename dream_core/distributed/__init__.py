"""Rendering one clip (or many) on several workers: segment plans, and a Ray runner (optional dependency).

* :mod:`.segments`: the plan (kept ranges, burn-in, cross-faded overlaps), from the clip and the workers.
* :mod:`.job`: what a worker runs for one segment (:func:`~.job.dream_segment`; no Ray), with a
  per-process model cache.
* :mod:`.assemble`: the driver's side: cross-fades and in-order commits to the resumable writer.
* :mod:`.runner`: Ray (imported only there, only when a run starts): local runtime or cluster, task
  retries, progress.
"""
