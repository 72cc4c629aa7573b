import Foundation

/// The release check an app runs on an over-the-air base model, exactly what `tandem pull` checks
/// (`tandem/release/layout.py`, `signing.py`): the manifest's Ed25519 signature (`manifest.sig`) by
/// a pinned key, before anything in the manifest is trusted; the manifest names this model and the
/// version asked for; every file name is a plain name; every file's size and sha256 match. On top, a
/// minimum version the app pins (the highest it has installed), so a channel pointed back at an
/// older, genuinely signed release is refused.
public enum ReleaseCheck {
    public static let manifestName = "manifest.json", signatureName = "manifest.sig"

    public struct Verified {
        public let model: String
        public let version: Int
        public let keyID: String
        /// The manifest's exact bytes (what was signed).
        public let manifestBytes: Data
        public let manifest: [String: Any]
        /// Every file the manifest names, verified.
        public let files: [String: Data]
    }

    /// Verify a release. `fetch` is asked only for files the verified manifest names (by plain name).
    /// `pointerManifestSHA256`: the channel pointer's checksum of the manifest, when pulled by channel.
    public static func verify(manifest manifestBytes: Data, signatureFile: Data?, model: String, version: String,
                              keys: ReleaseKeys, minimumVersion: Int? = nil, pointerManifestSHA256: String? = nil,
                              fetch: (String) throws -> Data) throws -> Verified {
        guard let number = releaseVersion(version) else { throw ReleaseError.badVersion(version) }
        if let minimumVersion, number < minimumVersion {
            throw ReleaseError.belowMinimum(version: number, minimum: minimumVersion)
        }
        if let expected = pointerManifestSHA256, TandemCrypto.sha256(manifestBytes).tandemHex != expected {
            throw ReleaseError.integrity("manifest of \(model)/\(version) does not match the channel's checksum")
        }
        let keyID = try keys.verify(manifest: manifestBytes, signatureFile: signatureFile)
        guard let manifest = (try? JSONSerialization.jsonObject(with: manifestBytes)) as? [String: Any],
              let listed = manifest["files"] as? [String: Any] else {
            throw ReleaseError.integrity("manifest of \(model)/\(version) is malformed")
        }
        let mModel = manifest["model"].map { "\($0)" } ?? "None", mVersion = manifest["version"].map { "\($0)" } ?? "None"
        guard mModel == model, mVersion == version else {
            throw ReleaseError.integrity("the manifest at \(model)/\(version) is for \(mModel)/\(mVersion)")
        }
        for name in listed.keys where !isPlainFileName(name) {
            throw ReleaseError.integrity("the manifest names a file '\(name.prefix(80))', which is not a plain file name: refused")
        }
        var files: [String: Data] = [:]
        for name in listed.keys.sorted() {
            guard let meta = listed[name] as? [String: Any], let sha = meta["sha256"] as? String,
                  let size = (meta["size"] as? NSNumber)?.intValue else {
                throw ReleaseError.integrity("manifest of \(model)/\(version) is malformed")
            }
            let data = try fetch(name)
            let got = TandemCrypto.sha256(data).tandemHex
            guard data.count == size, got == sha else {
                throw ReleaseError.integrity("\(name) of \(model)/\(version): sha256 \(got) (\(data.count) bytes) does not match "
                                             + "the manifest's \(sha) (\(size) bytes)")
            }
            files[name] = data
        }
        return Verified(model: model, version: number, keyID: keyID, manifestBytes: manifestBytes, manifest: manifest, files: files)
    }

    /// A release file name: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`, never the manifest or its signature.
    public static func isPlainFileName(_ name: String) -> Bool {
        let scalars = Array(name.unicodeScalars)
        guard (1...128).contains(scalars.count), name != manifestName, name != signatureName else { return false }
        func alnum(_ c: Unicode.Scalar) -> Bool { c.isASCII && (CharacterSet.alphanumerics.contains(c)) }
        return alnum(scalars[0]) && scalars.dropFirst().allSatisfy { alnum($0) || $0 == "." || $0 == "_" || $0 == "-" }
    }

    /// A release version: 1 to 9 decimal digits.
    public static func releaseVersion(_ text: String) -> Int? {
        guard (1...9).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    /// A channel name: `[a-z][a-z0-9_-]{0,31}`.
    public static func isChannelName(_ name: String) -> Bool {
        let s = Array(name.unicodeScalars)
        guard (1...32).contains(s.count), ("a"..."z").contains(s[0]) else { return false }
        return s.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }
}

/// The release public keys an app build pins (several during a rotation), by key id
/// (`ed25519:` + the first 16 hex characters of the raw public key's sha256, as `signing.key_id`).
public struct ReleaseKeys {
    public let keys: [String: TandemCrypto.Ed25519PublicKey]

    public init(_ publicKeys: [TandemCrypto.Ed25519PublicKey]) {
        keys = Dictionary(publicKeys.map { (ReleaseKeys.keyID($0), $0) }, uniquingKeysWith: { a, _ in a })
    }

    public static func keyID(_ key: TandemCrypto.Ed25519PublicKey) -> String {
        "ed25519:" + TandemCrypto.sha256(key.rawRepresentation).tandemHex.prefix(16)
    }

    /// 64 hex characters or a PEM public key (SubjectPublicKeyInfo), as `tandem keys create` writes.
    public static func parse(_ text: String) throws -> TandemCrypto.Ed25519PublicKey {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("-----BEGIN") {
            let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            guard let der = Data(base64Encoded: body), der.count == 44, der.prefix(12) == ed25519SPKIPrefix else {
                throw ReleaseError.badKey("the public key is not an Ed25519 public key (64 hex characters or PEM)")
            }
            return try TandemCrypto.Ed25519PublicKey(rawRepresentation: der.suffix(32))
        }
        guard text.count == 64, let raw = Data(tandemHex: text) else {
            throw ReleaseError.badKey("the public key is not an Ed25519 public key (64 hex characters or PEM)")
        }
        return try TandemCrypto.Ed25519PublicKey(rawRepresentation: raw)
    }

    static let ed25519SPKIPrefix = Data([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])

    /// The key id that signed `manifest` (its exact bytes); throws otherwise.
    public func verify(manifest: Data, signatureFile: Data?) throws -> String {
        guard !keys.isEmpty else { throw ReleaseError.signature("no public key pinned: pass --public-key") }
        guard let signatureFile else { throw ReleaseError.signature("the release is not signed (no manifest.sig)") }
        guard let sig = (try? JSONSerialization.jsonObject(with: signatureFile)) as? [String: Any],
              let kid = sig["key_id"] as? String, let alg = sig["alg"] as? String, let b64 = sig["signature"] as? String,
              let raw = Data(base64Encoded: b64) else {
            throw ReleaseError.signature("manifest.sig is malformed")
        }
        guard alg == "ed25519" else { throw ReleaseError.signature("manifest.sig uses '\(alg)', not ed25519") }
        guard let key = keys[kid] else { throw ReleaseError.signature("the release is signed by key '\(kid)', which is not pinned") }
        guard key.isValidSignature(raw, for: manifest) else {
            throw ReleaseError.signature("the manifest's signature by \(kid) does not verify: the release was altered")
        }
        return kid
    }
}

/// Why a release is refused; one line each.
public enum ReleaseError: Error, Equatable, CustomStringConvertible {
    case signature(String), integrity(String), badKey(String), badVersion(String), badChannel(String)
    case belowMinimum(version: Int, minimum: Int), notFound(String)

    public var description: String {
        switch self {
        case .signature(let s), .integrity(let s), .badKey(let s), .notFound(let s): return s
        case .badVersion(let v): return "version '\(v.prefix(40))' is not a release version (a positive number)"
        case .badChannel(let c): return "channel '\(c.prefix(40))' is not a channel name (lowercase letters, digits, - and _)"
        case .belowMinimum(let v, let m):
            return "the release is version \(v), below the minimum version \(m) this app accepts: refusing a rollback"
        }
    }
}
