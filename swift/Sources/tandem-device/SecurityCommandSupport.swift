// Shared by the security commands (pseudonym, seal, open, backup, restore, pull): options that may
// repeat, keys read only from the environment (never from argv, which `ps` shows), and writes that
// leave either the whole output or nothing.
import Foundation
import TandemKit

struct SecurityArguments {
    private(set) var values: [String: [String]] = [:]
    private(set) var positional: [String] = []

    init(_ args: [String], valued: Set<String>, allowPositional: Bool = false) throws {
        var i = 0
        while i < args.count {
            let arg = args[i]
            if valued.contains(arg), i + 1 < args.count {
                values[arg, default: []].append(args[i + 1])
                i += 2
            } else if allowPositional, !arg.hasPrefix("--") {
                positional.append(arg)
                i += 1
            } else {
                throw SecurityCommandError("unknown or incomplete option '\(arg)' (options: \(valued.sorted().joined(separator: ", ")))")
            }
        }
    }

    func optional(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }

    func required(_ name: String, _ what: String = "VALUE") throws -> String {
        guard let v = optional(name) else { throw SecurityCommandError("missing \(name) \(what)") }
        return v
    }

    func int(_ name: String) throws -> Int? {
        guard let text = optional(name) else { return nil }
        guard let n = Int(text), n >= 0 else { throw SecurityCommandError("\(name) must be a non-negative integer, got '\(text.prefix(40))'") }
        return n
    }

    func readFile(_ name: String) throws -> Data {
        let path = try required(name, "FILE")
        guard let data = FileManager.default.contents(atPath: path) else { throw SecurityCommandError("\(name) \(path): no such file") }
        return data
    }
}

struct SecurityCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// A 32-byte key from an environment variable holding 64 hex characters.
func hexKey(fromEnvironment name: String) throws -> Data {
    guard let hex = ProcessInfo.processInfo.environment[name], !hex.isEmpty else {
        throw SecurityCommandError("\(name) is not set: export the key as 64 hex characters (it is a secret: never pass it as an option)")
    }
    guard let key = Data(tandemHex: hex.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw SecurityCommandError("\(name) is not hex")
    }
    return key  // its length is checked by the operation, which says what it needs
}

/// Write `data` to `path` through a temporary file in the same folder and a rename.
func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try data.write(to: url, options: .atomic)
}
