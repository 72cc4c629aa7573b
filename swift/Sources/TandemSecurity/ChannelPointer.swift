import Foundation

/// Signed channel pointers (`tandem/release/pointers.py`): which release a channel names is signed
/// too, so a store writer cannot point a channel back at an older, genuinely signed release. The
/// signature covers only the five signed fields, serialized canonically (keys sorted, no spaces,
/// ASCII), e.g. `{"channel":"staging","issued_at":"…","manifest_sha256":"…","model":"…","version":"4"}`.
public enum ChannelPointer {
    public static let signedFields = ["channel", "issued_at", "manifest_sha256", "model", "version"]

    public struct Verified {
        public let version: String
        public let manifestSHA256: String
        public let keyID: String
    }

    /// The exact bytes the pointer's signature covers.
    public static func canonicalBytes(_ pointer: [String: Any]) throws -> Data {
        let missing = signedFields.filter { !(pointer[$0] is String) }
        guard missing.isEmpty else {
            throw ReleaseError.signature("the channel pointer lacks the signed field(s) \(missing.joined(separator: ", "))")
        }
        let body = signedFields.map { HeaderValue.pythonString($0) + ":" + HeaderValue.pythonString(pointer[$0] as! String) }
        return Data(("{" + body.joined(separator: ",") + "}").utf8)
    }

    /// Verify `pointer` (the parsed channel JSON) for `model`'s `channel` against the pinned keys.
    public static func verify(_ pointer: [String: Any], keys: ReleaseKeys, model: String, channel: String) throws -> Verified {
        let whereText = "channel '\(channel)' of \(model)"
        guard let sig = pointer["signature"] as? [String: Any] else {
            throw ReleaseError.signature("the \(whereText) is not signed: refused (the server re-signs it with "
                                         + "`tandem promote --version N` or its next release)")
        }
        guard let kid = sig["key_id"] as? String, let alg = sig["alg"] as? String, let b64 = sig["signature"] as? String,
              let raw = Data(base64Encoded: b64) else {
            throw ReleaseError.signature("the \(whereText) has a malformed signature: refused")
        }
        guard alg == "ed25519" else { throw ReleaseError.signature("the \(whereText) is signed with '\(alg)', not ed25519: refused") }
        guard let key = keys.keys[kid] else {
            throw ReleaseError.signature("the \(whereText) is signed by key '\(kid)', which is not pinned: refused")
        }
        guard key.isValidSignature(raw, for: try canonicalBytes(pointer)) else {
            throw ReleaseError.signature("the \(whereText)'s signature by \(kid) does not verify: the pointer was altered")
        }
        let signedModel = pointer["model"] as! String, signedChannel = pointer["channel"] as! String
        guard signedModel == model, signedChannel == channel else {
            throw ReleaseError.signature("the pointer at \(whereText) is signed for \(signedModel)'s channel '\(signedChannel)': "
                                         + "refused (a pointer copied from elsewhere)")
        }
        return Verified(version: pointer["version"] as! String, manifestSHA256: pointer["manifest_sha256"] as! String, keyID: kid)
    }
}
