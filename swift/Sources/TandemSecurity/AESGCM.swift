import Foundation

extension TandemCrypto {
    /// AES-256-GCM with a 96-bit nonce and a 128-bit tag: the AEAD of Tandem's sealed container.
    public enum AESGCM {
        public static let keyBytes = 32, nonceBytes = 12, tagBytes = 16

        /// ciphertext || tag of `plaintext` under `key` and `nonce`, authenticating `associatedData` too.
        public static func seal(_ plaintext: Data, key: Data, nonce: Data, associatedData: Data = Data()) throws -> Data {
            try check(key: key, nonce: nonce)
            return try Backend.aesGCMSeal(plaintext, key: key, nonce: nonce, aad: associatedData)
        }

        /// The plaintext of `ciphertextAndTag`; throws `CryptoError.authenticationFailed` when anything
        /// (ciphertext, tag, nonce, associated data, key) is not what was sealed.
        public static func open(_ ciphertextAndTag: Data, key: Data, nonce: Data, associatedData: Data = Data()) throws -> Data {
            try check(key: key, nonce: nonce)
            guard ciphertextAndTag.count >= tagBytes else { throw CryptoError.authenticationFailed }
            return try Backend.aesGCMOpen(ciphertextAndTag, key: key, nonce: nonce, aad: associatedData)
        }

        static func check(key: Data, nonce: Data) throws {
            guard key.count == keyBytes else {
                throw CryptoError.invalidInput("key must be 32 bytes (AES-256), got \(key.count)")
            }
            guard nonce.count == nonceBytes else {
                throw CryptoError.invalidInput("nonce must be 12 bytes, got \(nonce.count)")
            }
        }
    }
}
