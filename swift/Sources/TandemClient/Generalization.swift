import Foundation

/// The generalization hierarchy of the quasi-identifiers (device metadata), as
/// `tandem/privacy/policy.py` defines it. Level 0 is the plain value, the top level "*".
public enum Generalization {
    public static let suppressed = "*"
    /// The top level of each quasi-identifier column.
    public static let levels: [String: Int] = ["device_model": 3, "os_version": 2, "locale": 2, "app_version": 2]

    /// `value` of `column` at `level` (never less general than it already is); unknown shapes go to "*".
    public static func generalize(_ column: String, _ value: String, level: Int) throws -> String {
        guard let top = levels[column] else { throw ClientError.policy("unknown quasi-identifier column \(column)") }
        let level = min(max(level, levelOf(column, value)), top)
        if level == 0 { return value }
        if level >= top { return suppressed }
        switch column {
        case "device_model":
            guard let (family, major) = modelParts(value) else { return suppressed }
            return level == 1 ? family + major : family
        case "locale":
            let language = value.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "_" || $0 == "-" }).first.map(String.init)?.lowercased() ?? ""
            return isLanguage(language) ? language : suppressed
        case "os_version":
            let major = String(value.split(separator: ".", omittingEmptySubsequences: false).first ?? "")
            return isDigits(major) ? major : suppressed
        default:  // app_version
            let parts = value.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            return parts.count >= 2 && isDigits(parts[0]) && isDigits(parts[1]) ? parts[0] + "." + parts[1] : suppressed
        }
    }

    static func levelOf(_ column: String, _ value: String) -> Int {
        if value == suppressed { return levels[column] ?? 0 }
        switch column {
        case "device_model":
            guard let (_, major) = modelParts(value) else { return 0 }
            return value.contains(",") ? 0 : (major.isEmpty ? 2 : 1)
        case "locale":
            return isLanguage(value) ? 1 : 0
        default:
            let parts = value.split(separator: ".", omittingEmptySubsequences: false)
            return column == "os_version" ? (parts.count == 1 ? 1 : 0) : (parts.count == 2 ? 1 : 0)
        }
    }

    /// Python's `^([A-Za-z]+)(\d*)(?:,\d+)?$`: "iPhone15,2" -> ("iPhone", "15").
    static func modelParts(_ value: String) -> (String, String)? {
        let scalars = Array(value.unicodeScalars)
        var i = 0
        while i < scalars.count, isASCIILetter(scalars[i]) { i += 1 }
        guard i > 0 else { return nil }
        let family = String(String.UnicodeScalarView(scalars[0..<i]))
        var j = i
        while j < scalars.count, isASCIIDigit(scalars[j]) { j += 1 }
        let major = String(String.UnicodeScalarView(scalars[i..<j]))
        if j == scalars.count { return (family, major) }
        guard scalars[j] == ",", j + 1 < scalars.count else { return nil }
        for s in scalars[(j + 1)...] where !isASCIIDigit(s) { return nil }
        return (family, major)
    }

    static func isLanguage(_ s: String) -> Bool {
        (2...3).contains(s.unicodeScalars.count) && s.unicodeScalars.allSatisfy { $0.value >= 97 && $0.value <= 122 }
    }

    /// Python's `str.isdigit` on what devices send (ASCII digits; non-empty).
    static func isDigits(_ s: String) -> Bool { !s.isEmpty && s.unicodeScalars.allSatisfy(isASCIIDigit) }
    static func isASCIIDigit(_ s: Unicode.Scalar) -> Bool { s.value >= 48 && s.value <= 57 }
    static func isASCIILetter(_ s: Unicode.Scalar) -> Bool { (s.value >= 65 && s.value <= 90) || (s.value >= 97 && s.value <= 122) }
}
