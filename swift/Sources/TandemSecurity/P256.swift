import Foundation

extension TandemCrypto {
    /// An ECDSA P-256 signature: DER (X9.62 `SEQUENCE { r, s }`) or raw `r || s` (64 bytes).
    public struct P256Signature: Equatable {
        /// r || s, each 32 bytes big endian.
        public let rawRepresentation: Data

        public init(rawRepresentation: Data) throws {
            guard rawRepresentation.count == 64 else {
                throw CryptoError.invalidInput("a raw P-256 signature is 64 bytes (r||s), got \(rawRepresentation.count)")
            }
            self.rawRepresentation = rawRepresentation
        }

        public init(derRepresentation: Data) throws {
            self.rawRepresentation = try Backend.p256RawFromDER(derRepresentation)
        }

        public var derRepresentation: Data { Backend.p256DERFromRaw(rawRepresentation) }
    }

    /// A P-256 public key: X9.63 uncompressed (`04 || x || y`, 65 bytes) or SPKI DER (91 bytes).
    public struct P256PublicKey: Equatable {
        public let x963Representation: Data

        public init(x963Representation: Data) throws {
            guard x963Representation.count == 65, x963Representation.first == 0x04 else {
                throw CryptoError.invalidInput("a P-256 public key in X9.63 form is 65 bytes starting with 04")
            }
            try Backend.p256CheckPublic(x963Representation)
            self.x963Representation = x963Representation
        }

        public init(derRepresentation: Data) throws {
            guard derRepresentation.count == 91, derRepresentation.prefix(26) == P256PublicKey.spkiPrefix else {
                throw CryptoError.invalidInput("not a P-256 SubjectPublicKeyInfo (DER)")
            }
            try self.init(x963Representation: derRepresentation.suffix(65))
        }

        /// SubjectPublicKeyInfo DER: what a server loads with `load_der_public_key`.
        public var derRepresentation: Data { P256PublicKey.spkiPrefix + x963Representation }

        public func isValidSignature(_ signature: P256Signature, for message: Data) -> Bool {
            Backend.p256Verify(signature.derRepresentation, message: message, publicKey: x963Representation)
        }

        /// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ... }
        static let spkiPrefix = Data([
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ])
    }

    /// What signs a request with P-256 (ECDSA over SHA-256): a software key, or on a device a
    /// Secure Enclave key that never leaves the chip.
    public protocol P256Signer {
        var publicKey: P256PublicKey { get }
        func signature(for message: Data) throws -> P256Signature
    }

    /// A software P-256 signing key. Its 32-byte scalar (`rawRepresentation`) is a secret: keep it in
    /// the keychain, never in files or logs.
    public struct P256SigningKey: P256Signer {
        public let rawRepresentation: Data
        public let publicKey: P256PublicKey

        /// A fresh key from the platform's generator.
        public init() throws {
            try self.init(rawRepresentation: Backend.p256Generate())
        }

        public init(rawRepresentation: Data) throws {
            guard rawRepresentation.count == 32 else {
                throw CryptoError.invalidInput("a P-256 private key is 32 bytes, got \(rawRepresentation.count)")
            }
            self.rawRepresentation = rawRepresentation
            self.publicKey = try P256PublicKey(x963Representation: Backend.p256PublicFromPrivate(rawRepresentation))
        }

        /// ECDSA-SHA256 over `message` (randomized, so two signatures of one message differ).
        public func signature(for message: Data) throws -> P256Signature {
            try P256Signature(derRepresentation: Backend.p256Sign(message, privateKey: rawRepresentation))
        }
    }
}
