import Foundation

extension TandemCrypto {
    /// The platform's cryptographically secure random source (SecRandomCopyBytes on Apple platforms,
    /// OpenSSL's RAND_bytes on Linux): nonces, keys and the DP sampler's noise.
    public enum SecureRandom {
        /// `count` random bytes.
        public static func bytes(_ count: Int) -> Data { Backend.randomBytes(count) }

        /// A random UInt64, every value equally likely.
        public static func uint64() -> UInt64 {
            bytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }

        /// A uniform double in [0, 1): 53 random bits, so every representable multiple of 2^-53 is
        /// equally likely.
        public static func uniform() -> Double {
            Double(uint64() >> 11) * 0x1.0p-53
        }

        /// A uniform double in (0, 1): never 0, so `log(u)` is finite (inverse-CDF samplers).
        public static func uniformOpen() -> Double {
            while true {
                let u = uniform()
                if u > 0 { return u }
            }
        }
    }

    /// `SecureRandom` as a Swift `RandomNumberGenerator`, e.g. `Double.random(in: 0..<1, using: &rng)`.
    public struct SecureRandomNumberGenerator: RandomNumberGenerator {
        public init() {}
        public mutating func next() -> UInt64 { SecureRandom.uint64() }
    }
}
