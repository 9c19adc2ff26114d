"""Looking inside models: per-layer shapes, parameters, MACs and receptive fields (Handbook §3.1.1).

``summary(model, (C, H, W))`` returns a ``ModelSummary``; ``conv_output_size`` and
``receptive_field_of`` are the pure arithmetic behind it.
"""

from cnnlab.inspect.receptive import conv_output_size, receptive_field_of
from cnnlab.inspect.summary import LayerInfo, ModelSummary, summary

__all__ = ["LayerInfo", "ModelSummary", "conv_output_size", "receptive_field_of", "summary"]
