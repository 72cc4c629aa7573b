import Foundation

// The spec is read with JSONDecoder, not JSONSerialization: on Linux JSONSerialization can land a
// double one ulp off (e.g. a filter coefficient), and the featurizer must see Python's exact values.

/// Any JSON value as plain Swift values: NSNull, Bool, Int (integral numbers), Double, String, [Any], [String: Any].
struct AnyJSON: Decodable {
    let value: Any

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            value = NSNull()
        } else if let b = try? c.decode(Bool.self) {
            value = b
        } else if let i = try? c.decode(Int.self) {
            value = i
        } else if let d = try? c.decode(Double.self) {
            value = d
        } else if let s = try? c.decode(String.self) {
            value = s
        } else if let a = try? c.decode([AnyJSON].self) {
            value = a.map(\.value)
        } else {
            value = try c.decode([String: AnyJSON].self).mapValues(\.value)
        }
    }

    static func parse(_ data: Data) throws -> Any { try JSONDecoder().decode(AnyJSON.self, from: data).value }
}

/// A JSON number as a Double (integral numbers are read as Int).
func jsonDouble(_ value: Any?) -> Double? {
    if value is Bool { return nil }
    if let d = value as? Double { return d }
    if let i = value as? Int { return Double(i) }
    return nil
}

/// A JSON integer.
func jsonInt(_ value: Any?) -> Int? { value is Bool ? nil : value as? Int }
