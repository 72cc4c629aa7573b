"""The device half: run, update, check and back up a published Core ML model as the phone does.

Imports only numpy and protobuf (Core ML's messages are vendored in ``proto``); never torch or
coremltools, so it behaves like the app and stays honest about what the phone can do.
"""

from tandem.device.runtime import DeviceModel, ModelError, UnsupportedLayer, load_spec

__all__ = ["DeviceModel", "ModelError", "UnsupportedLayer", "load_spec"]
