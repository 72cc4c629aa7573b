import Foundation

extension TandemCrypto {
    /// An Ed25519 public key (32 raw bytes): what an app pins to check release signatures.
    public struct Ed25519PublicKey: Equatable {
        public let rawRepresentation: Data

        public init(rawRepresentation: Data) throws {
            guard rawRepresentation.count == 32 else {
                throw CryptoError.invalidInput("an Ed25519 public key is 32 bytes, got \(rawRepresentation.count)")
            }
            try Backend.ed25519CheckPublic(rawRepresentation)
            self.rawRepresentation = rawRepresentation
        }

        /// True when `signature` (64 bytes) is this key's signature over exactly `message`.
        public func isValidSignature(_ signature: Data, for message: Data) -> Bool {
            signature.count == 64 && Backend.ed25519Verify(signature, message: message, publicKey: rawRepresentation)
        }
    }

    /// An Ed25519 private key (its 32-byte seed). The app never signs releases; tests and tools do.
    public struct Ed25519PrivateKey {
        public let rawRepresentation: Data
        public let publicKey: Ed25519PublicKey

        /// A fresh key from the secure random source.
        public init() throws { try self.init(rawRepresentation: SecureRandom.bytes(32)) }

        public init(rawRepresentation: Data) throws {
            guard rawRepresentation.count == 32 else {
                throw CryptoError.invalidInput("an Ed25519 private key is 32 bytes, got \(rawRepresentation.count)")
            }
            self.rawRepresentation = rawRepresentation
            self.publicKey = try Ed25519PublicKey(rawRepresentation: Backend.ed25519PublicFromPrivate(rawRepresentation))
        }

        /// The 64-byte signature over `message`.
        public func signature(for message: Data) throws -> Data {
            try Backend.ed25519Sign(message, privateKey: rawRepresentation)
        }
    }
}
