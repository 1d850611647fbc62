"""The segmentation engine: run options, the streaming loop, many products on one process or Dask.

* :class:`SegmentConfig` (:mod:`nimbus.engine.config`): how a run tiles and writes, frozen and picklable.
* :func:`nimbus.engine.loop.stream`: reader -> inference -> blender -> sink, one window row at a time.
* :func:`segment_many` (:mod:`nimbus.engine.many`): many products, one record each, on this process
  or a Dask cluster (:mod:`nimbus.engine.distributed`, the ``[dask]`` extra).
* :class:`ProductRecord` and :class:`RunReport` (:mod:`nimbus.engine.records`): what became of
  each product, as JSON Lines.
"""

from nimbus.engine.config import SegmentConfig
from nimbus.engine.many import segment_many
from nimbus.engine.records import ProductRecord, RunReport, read_report
from nimbus.engine.worker import segment_one

__all__ = ["ProductRecord", "RunReport", "SegmentConfig", "read_report", "segment_many", "segment_one"]
