// Apple platforms: TandemCrypto over CryptoKit (and Security's SecRandomCopyBytes).
#if canImport(CryptoKit)
import CryptoKit
import Foundation
import Security

enum Backend {
    static func sha256(_ data: Data) -> Data { Data(SHA256.hash(data: data)) }

    static func hmacSHA256(key: Data, message: Data) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    static func aesGCMSeal(_ plaintext: Data, key: Data, nonce: Data, aad: Data) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: SymmetricKey(data: key), nonce: AES.GCM.Nonce(data: nonce),
                                   authenticating: aad)
        return box.ciphertext + box.tag
    }

    static func aesGCMOpen(_ sealed: Data, key: Data, nonce: Data, aad: Data) throws -> Data {
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: sealed.dropLast(16),
                                            tag: sealed.suffix(16))
            return try AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: aad)
        } catch {
            throw CryptoError.authenticationFailed
        }
    }

    static func ed25519CheckPublic(_ raw: Data) throws {
        _ = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }

    static func ed25519PublicFromPrivate(_ raw: Data) throws -> Data {
        try Curve25519.Signing.PrivateKey(rawRepresentation: raw).publicKey.rawRepresentation
    }

    static func ed25519Sign(_ message: Data, privateKey: Data) throws -> Data {
        try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey).signature(for: message)
    }

    static func ed25519Verify(_ signature: Data, message: Data, publicKey: Data) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: message)
    }

    static func p256Generate() throws -> Data { P256.Signing.PrivateKey().rawRepresentation }

    static func p256PublicFromPrivate(_ scalar: Data) throws -> Data {
        try P256.Signing.PrivateKey(rawRepresentation: scalar).publicKey.x963Representation
    }

    static func p256CheckPublic(_ x963: Data) throws {
        _ = try P256.Signing.PublicKey(x963Representation: x963)
    }

    static func p256Sign(_ message: Data, privateKey: Data) throws -> Data {
        try P256.Signing.PrivateKey(rawRepresentation: privateKey).signature(for: message).derRepresentation
    }

    static func p256Verify(_ der: Data, message: Data, publicKey: Data) -> Bool {
        guard let key = try? P256.Signing.PublicKey(x963Representation: publicKey),
              let signature = try? P256.Signing.ECDSASignature(derRepresentation: der) else { return false }
        return key.isValidSignature(signature, for: message)
    }

    static func p256RawFromDER(_ der: Data) throws -> Data {
        do { return try P256.Signing.ECDSASignature(derRepresentation: der).rawRepresentation }
        catch { throw CryptoError.invalidInput("not a DER ECDSA signature") }
    }

    static func p256DERFromRaw(_ raw: Data) -> Data {
        // A 64-byte r||s always converts.
        (try? P256.Signing.ECDSASignature(rawRepresentation: raw).derRepresentation) ?? Data()
    }

    static func randomBytes(_ count: Int) -> Data {
        var out = Data(count: count)
        guard count > 0 else { return out }
        let status = out.withUnsafeMutableBytes { SecRandomCopyBytes(kSecRandomDefault, count, $0.baseAddress!) }
        precondition(status == errSecSuccess, "SecRandomCopyBytes failed: no secure randomness available")
        return out
    }
}

#if os(iOS)
extension TandemCrypto {
    /// A P-256 key inside the Secure Enclave: the app keeps `dataRepresentation` (an opaque handle, not
    /// the key) in the keychain; signing happens on the chip.
    public struct SecureEnclaveP256Key: P256Signer {
        let key: SecureEnclave.P256.Signing.PrivateKey
        public let publicKey: P256PublicKey

        public init(dataRepresentation: Data? = nil) throws {
            key = try dataRepresentation.map { try SecureEnclave.P256.Signing.PrivateKey(dataRepresentation: $0) }
                ?? SecureEnclave.P256.Signing.PrivateKey()
            publicKey = try P256PublicKey(x963Representation: key.publicKey.x963Representation)
        }

        public var dataRepresentation: Data { key.dataRepresentation }

        public func signature(for message: Data) throws -> P256Signature {
            try P256Signature(rawRepresentation: key.signature(for: message).rawRepresentation)
        }
    }
}
#endif
#endif
