"""OpenVINO IR helpers the passes that write IR share (``export_openvino``, ``quantize_nncf``, ``select_subnet``, ``bundle``)."""

from __future__ import annotations

import re


def stable_names(model) -> None:
    """Rename OpenVINO's auto-named nodes (``Multiply_81430``: a process-wide counter) by their position.

    Without this the same ONNX file converts to a byte-different model.xml depending on how many models
    the process converted before; named nodes (inputs, outputs, ONNX names) are kept.
    """
    for position, node in enumerate(model.get_ordered_ops()):
        kind, name = node.get_type_name(), node.get_friendly_name()
        auto = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)_\d+", name)  # also folded constants: Const "Range_81422"
        if auto and kind not in ("Parameter", "Result"):
            node.set_friendly_name(f"{auto.group(1)}_{position}")
