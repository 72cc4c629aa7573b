import Foundation

/// What the app does with its personal-model backup when a new base model arrives (the rule of
/// `tandem/device/backup.py`'s `reconcile`): restore the backup if it was trained from the installed
/// base; otherwise re-personalize the new base from the labelled windows the device keeps
/// (TandemModel's update policy does that). A tampered, rolled-back or malformed backup is not an
/// upgrade but a security event: it throws instead of quietly re-personalizing.
public enum NewBaseRule {
    public enum Decision {
        case restore(ModelBackup.Restored)
        case repersonalize(reason: String)

        public var restores: Bool { if case .restore = self { return true }; return false }
    }

    public static func decide(backup: Data?, key: Data, installedBase: Data, keyID: String? = nil,
                              minimumCounter: Int = 0) throws -> Decision {
        guard let backup else { return .repersonalize(reason: "re-personalized: no backup") }
        do {
            return .restore(try ModelBackup.restore(backup, key: key, installedBase: installedBase, keyID: keyID,
                                                    minimumCounter: minimumCounter))
        } catch let error as BackupError {
            if case .incompatibleBase = error { return .repersonalize(reason: "re-personalized: \(error)") }
            throw error
        }
    }
}
