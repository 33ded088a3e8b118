"""A serving process collects young garbage in larger batches (freeapi/server.py
tune_gc; why, with figures: bench/gc_cost.py), keeping CPython's thresholds for the older
generations."""

from __future__ import annotations

import gc

from freeapi.server import GC_YOUNG_THRESHOLD, tune_gc


def test_a_serving_process_collects_young_garbage_in_larger_batches():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 11, 12)
        assert GC_YOUNG_THRESHOLD > 700
    finally:
        gc.set_threshold(*saved)
