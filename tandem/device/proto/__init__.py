"""Core ML protobuf modules, vendored so the device runtime needs no coremltools (which imports torch).

NOTICE: generated from Core ML's .proto files; BSD-3-Clause, Copyright (c) Apple Inc.; copied
unchanged from coremltools 9.0 (coremltools/proto/*_pb2.py).

Both copies register the same files in protobuf's default descriptor pool; protobuf accepts an
identical re-registration, so this package and ``coremltools.proto`` can be imported in one process.
"""
