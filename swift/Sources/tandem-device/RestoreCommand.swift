import Foundation
import TandemKit

/// `tandem-device restore --backup FILE --base MODEL --out MODEL [--key-id ID] [--min-counter N | --state FILE]`:
/// decrypt a personal-model backup under TANDEM_BACKUP_KEY, refusing a tampered one, one trained from
/// another base, one whose contents are not a backup's, and one older than the newest this device has
/// written or restored (rollback). With --state the state is advanced to the restored counter.
func restoreCommand(_ args: [String]) throws -> Int32 {
    let o = try SecurityArguments(args, valued: ["--backup", "--base", "--out", "--key-id", "--min-counter", "--state"])
    let key = try hexKey(fromEnvironment: "TANDEM_BACKUP_KEY")
    let out = try o.required("--out", "FILE")
    let state = o.optional("--state")
    let minimum = max(try o.int("--min-counter") ?? 0, try state.map(BackupState.read) ?? 0)
    let restored = try ModelBackup.restore(try o.readFile("--backup"), key: key, installedBase: try o.readFile("--base"),
                                           keyID: o.optional("--key-id"), minimumCounter: minimum)
    try writeAtomically(restored.model, to: out)
    if let state { try BackupState.write(max(minimum, restored.metadata.counter), to: state) }
    let m = restored.metadata
    print("restored backup \(m.counter) (base \(m.baseVersion), \(m.sampleCount) samples, created \(m.createdAt)) into \(out)")
    return 0
}
