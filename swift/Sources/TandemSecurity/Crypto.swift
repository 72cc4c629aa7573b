// The crypto primitives the rest of TandemKit calls: one small API over CryptoKit on Apple platforms
// and OpenSSL's libcrypto (EVP) on Linux. Nothing here is hand-rolled; each function is a thin,
// checked call into the platform's implementation.
import Foundation

/// Namespace of TandemKit's crypto primitives (`TandemCrypto.sha256`, `TandemCrypto.AESGCM`, ...).
public enum TandemCrypto {}

/// A crypto operation failed. The description is one line and never holds key material.
public enum CryptoError: Error, Equatable, CustomStringConvertible {
    /// AEAD open failed: tampered, truncated, or sealed with another key.
    case authenticationFailed
    /// A key, nonce or signature has the wrong length or encoding.
    case invalidInput(String)
    /// The platform's crypto library reported an error.
    case backend(String)

    public var description: String {
        switch self {
        case .authenticationFailed: return "authentication failed: tampered, truncated or sealed with another key"
        case .invalidInput(let why): return why
        case .backend(let why): return "crypto backend error: \(why)"
        }
    }
}

extension TandemCrypto {
    /// SHA-256 of `data` (32 bytes).
    public static func sha256(_ data: Data) -> Data { Backend.sha256(data) }

    /// HMAC-SHA256 of `message` under `key` (32 bytes). Any key length is allowed (RFC 2104), as in
    /// Python's `hmac.new`.
    public static func hmacSHA256(key: Data, message: Data) -> Data { Backend.hmacSHA256(key: key, message: message) }

    /// Compares two MACs or digests in time independent of where they differ.
    public static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }
}

extension Data {
    /// Lowercase hex, as Python's `bytes.hex()`.
    public var tandemHex: String { map { String(format: "%02x", $0) }.joined() }

    /// Bytes from hex (upper or lower case); nil when `hex` is not an even-length hex string.
    public init?(tandemHex hex: String) {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = Data(capacity: chars.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }
}
