// A minimal protobuf wire-format reader: enough to read a Core ML `.mlmodel` without a protobuf
// library (the toolchain has none). It walks fields in order and hands out the raw value of each;
// the message structs in ModelSpec.swift decide what the field numbers mean.
import Foundation

public enum ProtoError: Error, CustomStringConvertible, Equatable {
    case truncated(offset: Int)
    case varintTooLong(offset: Int)
    case badWireType(Int, offset: Int)
    case badLength(Int, offset: Int)

    public var description: String {
        switch self {
        case .truncated(let at): return "not a Core ML model: the protobuf ends inside a field (byte \(at))"
        case .varintTooLong(let at): return "not a Core ML model: a varint longer than 10 bytes at byte \(at)"
        case .badWireType(let t, let at): return "not a Core ML model: unknown protobuf wire type \(t) at byte \(at)"
        case .badLength(let n, let at): return "not a Core ML model: a field of \(n) bytes at byte \(at) runs past the end"
        }
    }
}

/// One field's value as it appears on the wire.
public enum ProtoValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes(ArraySlice<UInt8>)  // length-delimited: a string, a sub-message or a packed array
    case fixed32(UInt32)

    public var uint64: UInt64 {
        switch self {
        case .varint(let v), .fixed64(let v): return v
        case .fixed32(let v): return UInt64(v)
        case .bytes: return 0
        }
    }
    public var bool: Bool { uint64 != 0 }
    public var int: Int { Int(truncatingIfNeeded: Int64(bitPattern: uint64)) }
    /// A `float` field (fixed32), widened exactly to Double.
    public var float: Double {
        if case .fixed32(let bits) = self { return Double(Float(bitPattern: bits)) }
        return 0
    }
    /// A `double` field (fixed64).
    public var double: Double {
        if case .fixed64(let bits) = self { return Double(bitPattern: bits) }
        return 0
    }
    public var bytes: ArraySlice<UInt8> {
        if case .bytes(let b) = self { return b }
        return []
    }
    public var string: String { String(decoding: bytes, as: UTF8.self) }
}

/// Reads (field number, value) pairs from a message's bytes, in wire order.
public struct ProtoReader {
    private let data: ArraySlice<UInt8>
    private var at: Int

    public init(_ data: ArraySlice<UInt8>) {
        self.data = data
        self.at = data.startIndex
    }

    public init(_ data: [UInt8]) { self.init(data[...]) }

    public var isAtEnd: Bool { at >= data.endIndex }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = at
        while true {
            guard at < data.endIndex else { throw ProtoError.truncated(offset: start - data.startIndex) }
            guard shift < 64 else { throw ProtoError.varintTooLong(offset: start - data.startIndex) }
            let byte = data[at]
            at += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= data.endIndex - at else {
            throw ProtoError.badLength(count, offset: at - data.startIndex)
        }
        defer { at += count }
        return data[at..<at + count]
    }

    private mutating func littleEndian(_ count: Int) throws -> UInt64 {
        let raw = try take(count)
        return raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// The next field, or nil at the end of the message. Groups (wire types 3/4, unused by Core ML)
    /// are refused rather than skipped.
    public mutating func next() throws -> (field: Int, value: ProtoValue)? {
        guard !isAtEnd else { return nil }
        let start = at
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: return (field, .fixed64(try littleEndian(8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(Int.max) else { throw ProtoError.badLength(Int.max, offset: at - data.startIndex) }
            return (field, .bytes(try take(Int(length))))
        case 5: return (field, .fixed32(UInt32(try littleEndian(4))))
        default: throw ProtoError.badWireType(Int(key & 7), offset: start - data.startIndex)
        }
    }

    /// Calls `body` for each field of the message.
    public static func forEachField(in data: ArraySlice<UInt8>, _ body: (Int, ProtoValue) throws -> Void) throws {
        var reader = ProtoReader(data)
        while let (field, value) = try reader.next() {
            try body(field, value)
        }
    }
}

/// Repeated scalars arrive either packed (one length-delimited run) or one field per element;
/// a reader must accept both.
public enum Repeated {
    public static func floats(_ value: ProtoValue, into out: inout [Double]) throws {
        switch value {
        case .fixed32: out.append(value.float)
        case .bytes(let raw):
            guard raw.count % 4 == 0 else { throw ProtoError.badLength(raw.count, offset: 0) }
            out.reserveCapacity(out.count + raw.count / 4)
            var i = raw.startIndex
            while i < raw.endIndex {
                let bits = UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24
                out.append(Double(Float(bitPattern: bits)))
                i += 4
            }
        default: throw ProtoError.badWireType(0, offset: 0)
        }
    }

    public static func doubles(_ value: ProtoValue, into out: inout [Double]) throws {
        switch value {
        case .fixed64: out.append(value.double)
        case .bytes(let raw):
            guard raw.count % 8 == 0 else { throw ProtoError.badLength(raw.count, offset: 0) }
            var i = raw.startIndex
            while i < raw.endIndex {
                var bits: UInt64 = 0
                for k in (0..<8).reversed() { bits = bits << 8 | UInt64(raw[i + k]) }
                out.append(Double(bitPattern: bits))
                i += 8
            }
        default: throw ProtoError.badWireType(2, offset: 0)
        }
    }

    public static func varints(_ value: ProtoValue, into out: inout [Int]) throws {
        switch value {
        case .varint: out.append(value.int)
        case .bytes(let raw):
            var reader = ProtoReader(raw)
            while !reader.isAtEnd { out.append(Int(truncatingIfNeeded: Int64(bitPattern: try reader.varint()))) }
        default: throw ProtoError.badWireType(1, offset: 0)
        }
    }
}
