import Foundation
#if canImport(Security)
import Security
#endif

/// Where a device keeps the newest backup counter it has written or restored. It must outlive the
/// backups themselves (an app reinstall restores from a backup): on iOS the keychain, which survives
/// a reinstall; a file for tools and tests.
public protocol BackupCounterStore {
    /// The newest counter so far (0 when none was ever stored).
    func load() throws -> Int
    func save(_ counter: Int) throws
}

extension ModelBackup {
    /// Seal a backup numbered one above the store's counter, then advance the counter.
    public static func createNext(personal: Data, base: Data, baseVersion: String, pseudonym: String, sampleCount: Int,
                                  key: Data, keyID: String, counters: BackupCounterStore) throws -> Data {
        let counter = try counters.load() + 1
        let blob = try create(personal: personal, base: base, baseVersion: baseVersion, pseudonym: pseudonym,
                              sampleCount: sampleCount, counter: counter, key: key, keyID: keyID)
        try counters.save(counter)
        return blob
    }

    /// Restore a backup no older than the store's counter, then advance the counter to it.
    public static func restoreAdvancing(_ blob: Data, key: Data, installedBase: Data, keyID: String? = nil,
                                        counters: BackupCounterStore) throws -> Restored {
        let newest = try counters.load()
        let restored = try restore(blob, key: key, installedBase: installedBase, keyID: keyID, minimumCounter: newest)
        try counters.save(max(newest, restored.metadata.counter))
        return restored
    }
}

/// The counter in a small JSON file (`{"backup_counter": N}`), written atomically.
public struct FileBackupCounter: BackupCounterStore {
    public let url: URL
    public init(url: URL) { self.url = url }

    public func load() throws -> Int {
        guard let data = FileManager.default.contents(atPath: url.path) else { return 0 }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let n = (object["backup_counter"] as? NSNumber)?.intValue, n >= 0 else {
            throw BackupError.malformed("backup counter file \(url.path) is malformed (expected {\"backup_counter\": N})")
        }
        return n
    }

    public func save(_ counter: Int) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("{\"backup_counter\": \(counter)}\n".utf8).write(to: url, options: .atomic)
    }
}

#if canImport(Security) && canImport(CryptoKit)
/// The counter as a keychain item (generic password, this device only, readable after first unlock).
public struct KeychainBackupCounter: BackupCounterStore {
    public let service: String, account: String
    public init(service: String = "tandem.backup", account: String = "backup_counter") {
        self.service = service; self.account = account
    }

    private var query: [String: Any] {
        [kSecClass as String: kSecClassGenericPassword, kSecAttrService as String: service, kSecAttrAccount as String: account]
    }

    public func load() throws -> Int {
        var item: CFTypeRef?
        var q = query
        q[kSecReturnData as String] = true
        q[kSecMatchLimit as String] = kSecMatchLimitOne
        let status = SecItemCopyMatching(q as CFDictionary, &item)
        if status == errSecItemNotFound { return 0 }
        guard status == errSecSuccess, let data = item as? Data, let n = Int(String(decoding: data, as: UTF8.self)) else {
            throw BackupError.malformed("the keychain's backup counter cannot be read (status \(status))")
        }
        return n
    }

    public func save(_ counter: Int) throws {
        let value = Data(String(counter).utf8)
        let status = SecItemUpdate(query as CFDictionary, [kSecValueData as String: value] as CFDictionary)
        if status == errSecItemNotFound {
            var add = query
            add[kSecValueData as String] = value
            add[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
            let added = SecItemAdd(add as CFDictionary, nil)
            guard added == errSecSuccess else { throw BackupError.malformed("the keychain refused the backup counter (status \(added))") }
        } else if status != errSecSuccess {
            throw BackupError.malformed("the keychain refused the backup counter (status \(status))")
        }
    }
}
#endif
