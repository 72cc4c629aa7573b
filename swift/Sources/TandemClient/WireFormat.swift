import Foundation

/// Any JSON value, for the parts of a wire batch the device passes through (the policy's public JSON).
public enum JSONValue: Codable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

/// One column of a wire batch: strings, doubles (features, numeric labels) or integer milliseconds.
public enum WireColumn: Codable, Equatable {
    case strings([String]), numbers([Double]), milliseconds([Int64])

    public var count: Int {
        switch self {
        case .strings(let v): return v.count
        case .numbers(let v): return v.count
        case .milliseconds(let v): return v.count
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode([Int64].self) { self = .milliseconds(v) }
        else if let v = try? c.decode([Double].self) { self = .numbers(v) }
        else { self = .strings(try c.decode([String].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .strings(let v): try c.encode(v)
        case .numbers(let v): try c.encode(v)
        case .milliseconds(let v): try c.encode(v)
        }
    }
}

/// Wire format v1 (`docs/wire-format.md`, `docs/wire-format.schema.json`): the batch JSON a phone
/// writes with `JSONEncoder` and sends gzipped. Doubles go through `JSONEncoder` untouched: it writes
/// the shortest form that reads back to the same bits, so features arrive exactly.
public struct WireBatch: Codable, Equatable {
    public static let format = "tandem.batch/v1"
    public static let contentType = "application/vnd.tandem.batch+json"
    public static let sealedContentType = "application/vnd.tandem.sealed-batch"
    /// The sealed container's `content` header when it holds a gzip wire batch.
    public static let sealedPlaintext = "application/vnd.tandem.batch+json+gzip"

    public struct Header: Codable, Equatable {
        public var task: String
        public var policy: JSONValue
        public var pseudonym: String
        public var keyId: String
        public var clientBatchId: String
        public var createdAt: String
        public var rowCount: Int

        enum CodingKeys: String, CodingKey {
            case task, policy, pseudonym
            case keyId = "key_id", clientBatchId = "client_batch_id", createdAt = "created_at", rowCount = "row_count"
        }
    }

    public var format: String = WireBatch.format
    public var header: Header
    public var columns: [String: WireColumn]

    public init(header: Header, columns: [String: WireColumn]) throws {
        self.header = header
        self.columns = columns
        try validate()
    }

    /// The checks the gateway makes on the envelope, made before anything leaves the device.
    public func validate() throws {
        guard format == Self.format else { throw ClientError.wire("wire format \(format), this device writes \(Self.format)") }
        guard header.rowCount >= 1 else { throw ClientError.wire("a wire batch holds at least one row") }
        guard Self.matches(header.pseudonym, allowed: "0123456789abcdef", length: 64...64) else {
            throw ClientError.wire("the pseudonym must be 64 lowercase hex characters")
        }
        guard Self.matches(header.clientBatchId, allowed: Self.idCharacters, length: 1...64) else {
            throw ClientError.wire("client_batch_id must be 1-64 of [A-Za-z0-9_.-]")
        }
        guard Self.matches(header.keyId, allowed: Self.idCharacters, length: 1...32) else {
            throw ClientError.wire("key_id must be 1-32 of [A-Za-z0-9_.-]")
        }
        for required in ["window_id", "captured_at", "label"] where columns[required] == nil {
            throw ClientError.wire("a wire batch needs the column \(required)")
        }
        for (name, column) in columns {
            guard column.count == header.rowCount else {
                throw ClientError.wire("column \(name) has \(column.count) values, the header says \(header.rowCount) rows")
            }
            if case .numbers(let values) = column, !values.allSatisfy(\.isFinite) {
                throw ClientError.wire("column \(name) holds a non-finite value: the gateway refuses NaN and infinity")
            }
        }
    }

    /// The JSON (sorted keys: the same batch always gives the same bytes, which a retry needs).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try encoder.encode(self)
    }

    /// The body of `POST /v1/batches` (Content-Encoding: gzip).
    public func body() throws -> Data { try Gzip.compress(json()) }

    public static func decode(body: Data) throws -> WireBatch {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try decoder.decode(WireBatch.self, from: Gzip.decompress(body))
    }

    /// `2026-12-03T13:00:00Z`: the header's created_at.
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    static let idCharacters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
    static func matches(_ s: String, allowed: String, length: ClosedRange<Int>) -> Bool {
        length.contains(s.unicodeScalars.count) && s.unicodeScalars.allSatisfy { allowed.unicodeScalars.contains($0) }
    }
}
