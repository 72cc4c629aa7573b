import Foundation

/// The one sealed container both sides use (`tandem/contract/sealing.py`): sealed batches and
/// personal-model backups. AES-256-GCM; everything before the nonce is the associated data, so the
/// header can be read before decrypting (to pick the key) but not altered:
///
///     magic | version (1 byte) | header length (2 bytes, big endian) | header (JSON, UTF-8)
///     | nonce (12 bytes) | ciphertext + 16-byte tag
public enum SealedContainer {
    public static let algorithm = "AES-256-GCM"
    public static let version: UInt8 = 1
    static let nonceBytes = 12, tagBytes = 16

    /// The sealed container of `plaintext` under a fresh random nonce. `header` must name `key_id`.
    public static func seal(_ plaintext: Data, key: Data, magic: Data, header: [String: HeaderValue]) throws -> Data {
        try seal(plaintext, key: key, magic: magic, header: header, nonce: TandemCrypto.SecureRandom.bytes(nonceBytes))
    }

    /// With a chosen nonce: only for tests that compare bytes with Python (never reuse a nonce).
    static func seal(_ plaintext: Data, key: Data, magic: Data, header: [String: HeaderValue], nonce: Data) throws -> Data {
        try checkKey(key)
        var fields = header
        fields["alg"] = .string(algorithm)
        guard case .string = fields["key_id"] else { throw SealError.headerLacksAlgKeyID }
        let head = HeaderValue.pythonJSON(fields)
        guard head.count <= Int(UInt16.max) else { throw SealError.invalidInput("header longer than 65535 bytes") }
        let prefix = magic + Data([version, UInt8(head.count >> 8), UInt8(head.count & 0xff)]) + head
        return prefix + nonce + (try TandemCrypto.AESGCM.seal(plaintext, key: key, nonce: nonce, associatedData: prefix))
    }

    public static func isSealed(_ data: Data, magic: Data) -> Bool {
        data.count >= magic.count && data.prefix(magic.count) == magic
    }

    /// The header (authenticated only once opened).
    public static func readHeader(_ data: Data, magic: Data) throws -> [String: HeaderValue] {
        let data = Data(data)  // indices from 0
        let end = try prefixEnd(data, magic: magic)
        guard let header = try? JSONDecoder().decode([String: HeaderValue].self, from: data[(magic.count + 3)..<end]) else {
            throw SealError.unreadableHeader
        }
        guard header["alg"] == .string(algorithm), case .string = header["key_id"] else {
            throw SealError.headerLacksAlgKeyID
        }
        return header
    }

    /// (plaintext, header); throws `SealError.authenticationFailed` when any byte was altered or the
    /// key is not the one that sealed it.
    public static func open(_ data: Data, key: Data, magic: Data) throws -> (plaintext: Data, header: [String: HeaderValue]) {
        let data = Data(data)
        let header = try readHeader(data, magic: magic)
        try checkKey(key)
        let end = try prefixEnd(data, magic: magic)
        let nonce = data[end..<(end + nonceBytes)], sealed = data[(end + nonceBytes)...]
        do {
            return (try TandemCrypto.AESGCM.open(Data(sealed), key: key, nonce: Data(nonce), associatedData: data[..<end]), header)
        } catch CryptoError.authenticationFailed {
            throw SealError.authenticationFailed(keyID: header["key_id"]?.stringValue ?? "")
        }
    }

    static func checkKey(_ key: Data) throws {
        guard key.count == 32 else { throw SealError.keyLength(key.count) }
    }

    private static func prefixEnd(_ data: Data, magic: Data) throws -> Int {
        guard isSealed(data, magic: magic), data.count >= magic.count + 3 else { throw SealError.notSealed }
        let v = data[magic.count]
        guard v == version else { throw SealError.unknownVersion(Int(v)) }
        let length = Int(data[magic.count + 1]) << 8 | Int(data[magic.count + 2])
        let end = magic.count + 3 + length
        guard data.count >= end + nonceBytes + tagBytes else { throw SealError.truncated }
        return end
    }
}

/// Why a sealed container cannot be read or opened; one line, safe to log (never key material).
public enum SealError: Error, Equatable, CustomStringConvertible {
    case notSealed, unknownVersion(Int), truncated, unreadableHeader, headerLacksAlgKeyID
    case keyLength(Int), authenticationFailed(keyID: String), invalidInput(String)

    public var description: String {
        switch self {
        case .notSealed: return "not a sealed container (no magic)"
        case .unknownVersion(let v): return "unknown container version \(v)"
        case .truncated: return "truncated container"
        case .unreadableHeader: return "unreadable header"
        case .headerLacksAlgKeyID: return "header lacks alg/key_id"
        case .keyLength(let n): return "key must be 32 bytes (AES-256), got \(n) bytes"
        case .authenticationFailed(let id):
            return "failed authentication under key '\(id.prefix(64))': tampered, truncated or sealed with another key"
        case .invalidInput(let why): return why
        }
    }
}

/// A scalar of a container header (headers hold strings and integers; anything else read from a
/// header is kept as `.other` so an unknown field never stops a read).
public enum HeaderValue: Codable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral {
    case string(String), int(Int), bool(Bool), double(Double), other

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? { if case .int(let n) = self { return n }; return nil }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Int.self) { self = .int(n) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else { self = .other }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let n): try c.encode(n)
        case .bool(let b): try c.encode(b)
        case .double(let d): try c.encode(d)
        case .other: try c.encodeNil()
        }
    }

    /// `json.dumps(fields, sort_keys=True)` exactly as Python writes it (", " and ": " separators,
    /// non-ASCII escaped), so a header sealed here is byte-identical to the server's.
    static func pythonJSON(_ fields: [String: HeaderValue]) -> Data {
        let body = fields.keys.sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
            .map { pythonString($0) + ": " + fields[$0]!.pythonLiteral }
            .joined(separator: ", ")
        return Data(("{" + body + "}").utf8)
    }

    var pythonLiteral: String {
        switch self {
        case .string(let s): return HeaderValue.pythonString(s)
        case .int(let n): return String(n)
        case .bool(let b): return b ? "true" : "false"
        case .double(let d): return "\(d)"
        case .other: return "null"
        }
    }

    static func pythonString(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5c: out += "\\\\"
            case 0x0a: out += "\\n"
            case 0x0d: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0c: out += "\\f"
            case 0x20...0x7e: out += String(UnicodeScalar(UInt8(unit)))
            default: out += String(format: "\\u%04x", unit)
            }
        }
        return out + "\""
    }
}
