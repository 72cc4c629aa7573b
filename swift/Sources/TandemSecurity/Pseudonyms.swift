import Foundation

/// Pseudonyms byte-identical to `tandem/privacy/pseudonyms.py`: keyed HMAC-SHA256 of the user id's
/// UTF-8 bytes, lowercase hex (64 characters). Without the key it can be neither reversed nor linked.
public enum Pseudonyms {
    public static let pattern = "^[0-9a-f]{64}$"

    public static func pseudonymize(_ userID: String, key: Data) throws -> String {
        guard !key.isEmpty else { throw CryptoError.invalidInput("a pseudonymization key is required") }
        return TandemCrypto.hmacSHA256(key: key, message: Data(userID.utf8)).tandemHex
    }
}
