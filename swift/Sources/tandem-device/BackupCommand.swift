import Foundation
import TandemKit

/// `tandem-device backup --personal MODEL --base MODEL --base-version V --pseudonym P --sample-count N
///  --key-id ID (--counter N | --state FILE) --out FILE`: the personal model's encrypted backup under
/// TANDEM_BACKUP_KEY (64 hex), as `tandem/device/backup.py`. With --state (the app's keychain entry:
/// `{"backup_counter": n}`) the counter is one more than the state's, and the state is advanced.
func backupCommand(_ args: [String]) throws -> Int32 {
    let o = try SecurityArguments(args, valued: ["--personal", "--base", "--base-version", "--pseudonym", "--sample-count",
                                                 "--key-id", "--counter", "--state", "--out"])
    let key = try hexKey(fromEnvironment: "TANDEM_BACKUP_KEY")
    let out = try o.required("--out", "FILE")
    let state = o.optional("--state")
    guard let counter = try o.int("--counter") ?? state.map({ try BackupState.read($0) + 1 }) else {
        throw SecurityCommandError("give --counter N or --state FILE (the backup counter must only grow)")
    }
    let blob = try ModelBackup.create(personal: try o.readFile("--personal"), base: try o.readFile("--base"),
                                      baseVersion: try o.required("--base-version"), pseudonym: try o.required("--pseudonym"),
                                      sampleCount: try o.int("--sample-count") ?? 0, counter: counter, key: key,
                                      keyID: try o.required("--key-id", "ID"))
    try writeAtomically(blob, to: out)
    if let state { try BackupState.write(counter, to: state) }
    print("backup \(counter) written to \(out) (\(blob.count) bytes)")
    return 0
}

/// The newest backup counter this device has written or restored (on a phone: a keychain item).
enum BackupState {
    static func read(_ path: String) throws -> Int { try FileBackupCounter(url: URL(fileURLWithPath: path)).load() }
    static func write(_ counter: Int, to path: String) throws { try FileBackupCounter(url: URL(fileURLWithPath: path)).save(counter) }
}
