// Shared by the model commands (predict, update-policy): `--name value` options and JSON output
// whose floats round-trip (Swift's shortest representation reads back to the same Double).
import Foundation

struct ModelCommandArguments {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// `valued`: options taking a value; `switches`: options without one. Anything else is refused.
    init(_ args: [String], valued: Set<String>, switches: Set<String> = []) throws {
        var i = 0
        while i < args.count {
            let arg = args[i]
            if switches.contains(arg) {
                flags.insert(arg)
            } else if valued.contains(arg), i + 1 < args.count {
                values[arg] = args[i + 1]
                i += 1
            } else {
                throw ModelCommandError("unknown or incomplete option '\(arg)' (options: \((valued.union(switches)).sorted().joined(separator: ", ")))")
            }
            i += 1
        }
    }

    func required(_ name: String) throws -> String {
        guard let v = values[name] else { throw ModelCommandError("missing \(name) FILE") }
        return v
    }

    func optional(_ name: String) -> String? { values[name] }
    func has(_ name: String) -> Bool { flags.contains(name) }

    func file(_ name: String) throws -> URL {
        let path = try required(name)
        guard FileManager.default.fileExists(atPath: path) else { throw ModelCommandError("\(name) \(path): no such file") }
        return URL(fileURLWithPath: path)
    }
}

struct ModelCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// A JSON value written by hand: Foundation's JSONSerialization may print floats that do not read
/// back to the same Double, and never prints NaN (which these commands refuse anyway).
indirect enum JSONOut {
    case number(Double), int(Int), string(String), bool(Bool), null
    case array([JSONOut]), object([(String, JSONOut)])

    static func numbers(_ v: [Double]) -> JSONOut { .array(v.map(JSONOut.number)) }
    static func matrix(_ m: [[Double]]) -> JSONOut { .array(m.map(numbers)) }
    static func strings(_ v: [String]) -> JSONOut { .array(v.map(JSONOut.string)) }
    static func ints(_ v: [Int]) -> JSONOut { .array(v.map(JSONOut.int)) }

    var text: String {
        switch self {
        case .number(let d): return d.isFinite ? d.description : "null"
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .string(let s):
            let data = try? JSONSerialization.data(withJSONObject: [s], options: [])
            return data.map { String(decoding: $0, as: UTF8.self).dropFirst().dropLast().description } ?? "\"\""
        case .array(let items): return "[" + items.map(\.text).joined(separator: ", ") + "]"
        case .object(let pairs): return "{" + pairs.map { JSONOut.string($0.0).text + ": " + $0.1.text }.joined(separator: ", ") + "}"
        }
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}
