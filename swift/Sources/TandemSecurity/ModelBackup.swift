import Foundation

/// Encrypted backup of a personal model, interoperable with `tandem/device/backup.py`: the sealed
/// container with magic `TNDB`, header `{alg, format_version, key_id}`, plaintext
/// `u32 metadata length | metadata JSON | personal .mlmodel`.
///
/// Every backup carries a monotonic `counter`: the app keeps the highest counter it has written or
/// restored (in the keychain) and passes it as `minimumCounter`, so an older genuine backup is never
/// put back over a newer one. Format 2 backups (before the counter) stay readable as counter 0.
public enum ModelBackup {
    public static let magic = Data("TNDB".utf8)
    public static let formatVersion = 3
    public static let readableVersions = [2, 3]

    public struct Metadata: Codable, Equatable {
        public var baseVersion: String
        public var baseSHA256: String
        public var pseudonym: String
        public var sampleCount: Int
        public var createdAt: String  // ISO 8601, UTC
        public var personalSHA256: String
        public var counter: Int

        enum CodingKeys: String, CodingKey {
            case baseVersion = "base_version", baseSHA256 = "base_sha256", pseudonym, sampleCount = "sample_count"
            case createdAt = "created_at", personalSHA256 = "personal_sha256", counter
        }

        public init(baseVersion: String, baseSHA256: String, pseudonym: String, sampleCount: Int, createdAt: String,
                    personalSHA256: String, counter: Int) {
            self.baseVersion = baseVersion; self.baseSHA256 = baseSHA256; self.pseudonym = pseudonym
            self.sampleCount = sampleCount; self.createdAt = createdAt; self.personalSHA256 = personalSHA256
            self.counter = counter
        }

        // Unknown keys are ignored (a newer app's fields); the optional ones default as in Python.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            baseVersion = try c.decode(String.self, forKey: .baseVersion)
            baseSHA256 = try c.decode(String.self, forKey: .baseSHA256)
            pseudonym = try c.decode(String.self, forKey: .pseudonym)
            sampleCount = try c.decode(Int.self, forKey: .sampleCount)
            createdAt = try c.decode(String.self, forKey: .createdAt)
            personalSHA256 = try c.decodeIfPresent(String.self, forKey: .personalSHA256) ?? ""
            let format = decoder.userInfo[Metadata.formatKey] as? Int ?? ModelBackup.formatVersion
            counter = format >= 3 ? try c.decode(Int.self, forKey: .counter)
                                  : try c.decodeIfPresent(Int.self, forKey: .counter) ?? 0
        }

        static let formatKey = CodingUserInfoKey(rawValue: "tandem.backup.format")!
    }

    public struct Restored {
        public let model: Data
        public let metadata: Metadata
    }

    /// Seal `personal` (.mlmodel bytes) trained from the base whose file bytes are `base`.
    /// `counter`: one more than the highest the device has written or restored.
    public static func create(personal: Data, base: Data, baseVersion: String, pseudonym: String, sampleCount: Int,
                              counter: Int, key: Data, keyID: String, createdAt: Date = Date()) throws -> Data {
        try checkKey(key)
        guard counter >= 0 else { throw BackupError.malformed("the backup counter must be a non-negative integer") }
        guard CoreMLPayload.isModel(personal) else { throw BackupError.notAModel }
        let meta = Metadata(baseVersion: baseVersion, baseSHA256: TandemCrypto.sha256(base).tandemHex,
                            pseudonym: pseudonym, sampleCount: sampleCount, createdAt: isoUTC(createdAt),
                            personalSHA256: TandemCrypto.sha256(personal).tandemHex, counter: counter)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let metaBytes = try encoder.encode(meta)
        var plain = Data(capacity: 4 + metaBytes.count + personal.count)
        withUnsafeBytes(of: UInt32(metaBytes.count).bigEndian) { plain.append(contentsOf: $0) }
        plain += metaBytes + personal
        return try SealedContainer.seal(plain, key: key, magic: magic,
                                        header: ["format_version": .int(formatVersion), "key_id": .string(keyID)])
    }

    /// The readable (authenticated once opened) header: alg, format_version, key_id.
    public static func readHeader(_ blob: Data) throws -> [String: HeaderValue] {
        let header: [String: HeaderValue]
        do { header = try SealedContainer.readHeader(blob, magic: magic) }
        catch SealError.notSealed { throw BackupError.notABackup }
        catch { throw BackupError.tampered("backup header is unreadable (tampered or truncated)") }
        guard let v = header["format_version"]?.intValue, readableVersions.contains(v) else {
            throw BackupError.unsupportedFormat(header["format_version"].map { "\($0.pythonLiteral)" } ?? "none")
        }
        return header
    }

    /// Decrypt and authenticate; refuse a counter below `minimumCounter`. No base check.
    public static func open(_ blob: Data, key: Data, keyID: String? = nil, minimumCounter: Int = 0) throws -> Restored {
        try checkKey(key)
        let header = try readHeader(blob)
        if let keyID, header["key_id"]?.stringValue != keyID {
            throw BackupError.wrongKeyID(sealedWith: header["key_id"]?.stringValue ?? "", expected: keyID)
        }
        let plain: Data
        do { plain = try SealedContainer.open(blob, key: key, magic: magic).plaintext }
        catch { throw BackupError.tampered("backup failed authentication: it was altered or the key is wrong") }
        let bytes = [UInt8](plain)
        guard bytes.count >= 4 else { throw BackupError.malformed("backup metadata length runs past its end") }
        let m = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        guard m <= bytes.count - 4 else { throw BackupError.malformed("backup metadata length runs past its end") }
        let decoder = JSONDecoder()
        decoder.userInfo[Metadata.formatKey] = header["format_version"]?.intValue
        let meta: Metadata
        do { meta = try decoder.decode(Metadata.self, from: Data(bytes[4..<(4 + m)])) }
        catch { throw BackupError.malformed("backup metadata is malformed (\(describe(error)))") }
        guard meta.sampleCount >= 0, meta.counter >= 0 else { throw BackupError.malformed("backup metadata holds a negative count") }
        let body = Data(bytes[(4 + m)...])
        if !meta.personalSHA256.isEmpty && TandemCrypto.sha256(body).tandemHex != meta.personalSHA256 {
            throw BackupError.tampered("personal model digest does not match its metadata")
        }
        guard meta.counter >= minimumCounter else { throw BackupError.rolledBack(counter: meta.counter, minimum: minimumCounter) }
        guard CoreMLPayload.isModel(body) else { throw BackupError.notAModel }
        return Restored(model: body, metadata: meta)
    }

    /// `open`, then check the backup was trained from the installed base (its file bytes).
    public static func restore(_ blob: Data, key: Data, installedBase: Data, keyID: String? = nil,
                               minimumCounter: Int = 0) throws -> Restored {
        let restored = try open(blob, key: key, keyID: keyID, minimumCounter: minimumCounter)
        let installed = TandemCrypto.sha256(installedBase).tandemHex
        guard restored.metadata.baseSHA256 == installed else {
            throw BackupError.incompatibleBase(backupVersion: restored.metadata.baseVersion,
                                               backupBase: String(restored.metadata.baseSHA256.prefix(12)),
                                               installed: String(installed.prefix(12)))
        }
        return restored
    }

    static func checkKey(_ key: Data) throws {
        guard key.count == 32 else { throw BackupError.keyLength(key.count) }
    }

    static func isoUTC(_ date: Date) -> String {
        // Python's datetime.isoformat() of an aware UTC time: 2026-12-03T13:20:05.123456+00:00
        let seconds = date.timeIntervalSince1970
        let whole = floor(seconds)
        let micros = Int(((seconds - whole) * 1_000_000).rounded(.down))
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        let base = f.string(from: Date(timeIntervalSince1970: whole))
        return micros == 0 ? base + "+00:00" : base + String(format: ".%06d+00:00", micros)
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "lacks '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "unreadable"
        }
    }
}

/// Why a backup cannot be used; one line each, never key material.
public enum BackupError: Error, Equatable, CustomStringConvertible {
    case notABackup, keyLength(Int), tampered(String), unsupportedFormat(String), wrongKeyID(sealedWith: String, expected: String)
    case malformed(String), notAModel, rolledBack(counter: Int, minimum: Int)
    case incompatibleBase(backupVersion: String, backupBase: String, installed: String)

    public var description: String {
        switch self {
        case .notABackup: return "not a Tandem model backup"
        case .keyLength(let n): return "the backup key must be 32 bytes (AES-256), got \(n) bytes"
        case .tampered(let why): return why
        case .unsupportedFormat(let v): return "unsupported backup format version \(v)"
        case .wrongKeyID(let sealed, let expected): return "backup was sealed with key '\(sealed)', not '\(expected)'"
        case .malformed(let why): return why
        case .notAModel: return "backup payload is not a Core ML model"
        case .rolledBack(let counter, let minimum):
            return "backup counter \(counter) is older than \(minimum), the newest this device has written or restored: "
                + "refusing to roll the personal model back"
        case .incompatibleBase(let v, let b, let installed):
            return "backup was trained from base \(v) (\(b)), installed base is \(installed)"
        }
    }
}
