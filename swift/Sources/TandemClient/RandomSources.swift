import Foundation
import TandemSecurity

/// The DP noise of one window, from the device's secret key: HMAC-SHA256 blocks of
/// `tandem-dp|<policy fingerprint>|<window id>|<counter>`. Unpredictable without the key (a PRF), and
/// the same window under the same policy gets the same noise, so re-sharing it releases nothing new
/// (the ledger charges it once), as in the Python simulator. Not the simulator's numbers: its stream is
/// numpy's PCG64 seeded the same way; the two agree in distribution, not draw by draw.
public struct KeyedStream: RandomSource {
    let key: Data
    let label: String
    var counter: UInt64 = 0
    var buffer: [UInt64] = []

    public init(key: Data, fingerprint: String, windowId: String) {
        self.key = key
        self.label = "tandem-dp|\(fingerprint)|\(windowId)|"
    }

    public mutating func next() -> UInt64 {
        if buffer.isEmpty {
            let block = TandemCrypto.hmacSHA256(key: key, message: Data((label + String(counter)).utf8))
            counter += 1
            buffer = stride(from: 0, to: 32, by: 8).map { i in block[block.startIndex + i ..< block.startIndex + i + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        }
        return buffer.removeLast()
    }
}

/// The platform's secure random source (SecRandomCopyBytes / OpenSSL RAND_bytes) as a `RandomSource`.
public struct SystemRandomSource: RandomSource {
    public init() {}
    public mutating func next() -> UInt64 { TandemCrypto.SecureRandom.uint64() }
}
