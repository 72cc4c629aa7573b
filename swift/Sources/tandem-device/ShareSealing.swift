import Foundation
import TandemKit

/// The encrypted form's sealer: TANDEM_ENCRYPTION_KEY (64 hex) and its id seal each gzip body in the
/// TNDMSEAL container (TandemSecurity), as `tandem/privacy/sealing.py` does on the server side.
func batchSealer(env: [String: String], expectedKeyId: String?) throws -> (Data) throws -> Data {
    guard let hex = env["TANDEM_ENCRYPTION_KEY"] else {
        throw ClientError.policy("the encrypted form needs a sealing key: set TANDEM_ENCRYPTION_KEY (64 hex characters)")
    }
    guard let key = Data(tandemHex: hex.trimmingCharacters(in: .whitespaces)), key.count == 32 else {
        throw ClientError.policy("TANDEM_ENCRYPTION_KEY must be 32 bytes (64 hex characters)")
    }
    let keyId = env["TANDEM_ENCRYPTION_KEY_ID"] ?? "e1"
    if let expectedKeyId, expectedKeyId != keyId {
        throw ClientError.policy("the policy seals with key \(expectedKeyId), but TANDEM_ENCRYPTION_KEY_ID names \(keyId)")
    }
    return { body in
        try SealedContainer.seal(body, key: key, magic: Data("TNDMSEAL".utf8),
                                 header: ["key_id": .string(keyId), "content": .string(WireBatch.sealedPlaintext)])
    }
}
