import Foundation
import TandemKit

// tandem-device: TandemKit's operations from the command line, for tests and for an app developer
// debugging a mismatch. Each command lives in its own file as `func <name>Command(_ args: [String]) throws -> Int32`
// and has one line in this table.
let commands: [String: (summary: String, run: ([String]) throws -> Int32)] = [
    "version": ("print TandemKit's version", { _ in print(TandemKit.version); return 0 }),
    "pseudonym": ("pseudonyms of user ids under TANDEM_PSEUDONYM_KEY, as the server computes them", pseudonymCommand),
    "seal": ("seal a file in Tandem's sealed container under TANDEM_ENCRYPTION_KEY", sealCommand),
    "open": ("open a sealed container under TANDEM_ENCRYPTION_KEY (tampering refused)", openCommand),
    "backup": ("encrypted backup of a personal model under TANDEM_BACKUP_KEY, with a monotonic counter", backupCommand),
    "restore": ("restore a personal-model backup (tampering, another base, rollback refused)", restoreCommand),
    "pull": ("download and verify a release (signature, checksums, minimum version) from a store or the gateway", pullCommand),
    "predict": ("predictions of a .mlmodel for a JSON array of feature vectors", predictCommand),
    "update-policy": ("replay a release's golden update-policy trace through TandemModel's policy", updatePolicyCommand),
    "featurize": ("feature vectors of raw windows under a release's feature_spec.json", featurizeCommand),
    "share": ("featurize a user's windows, apply the sharing policy, upload through the gateway", shareCommand),
]

func usage() -> String {
    "usage: tandem-device <command> [options]\n" + commands.keys.sorted()
        .map { "  \($0.padding(toLength: 14, withPad: " ", startingAt: 0)) \(commands[$0]!.summary)" }.joined(separator: "\n")
}

let argv = Array(CommandLine.arguments.dropFirst())
guard let name = argv.first, let command = commands[name] else {
    FileHandle.standardError.write((usage() + "\n").data(using: .utf8)!)
    exit(2)
}
do {
    exit(try command.run(Array(argv.dropFirst())))
} catch {
    // One line, never a trace: what went wrong, as the error describes itself.
    FileHandle.standardError.write("tandem-device \(name): \(error)\n".data(using: .utf8)!)
    exit(1)
}
