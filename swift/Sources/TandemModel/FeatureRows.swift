// Bad input stops here, before a prediction or an update: a NaN, an infinity or a value that is
// not a number (a string, null, true) in a feature vector is counted and refused, never coerced.
import Foundation

public enum FeatureInputError: Error, CustomStringConvertible, Equatable {
    case notFinite(count: Int, total: Int, rows: [Int])
    case notNumeric(count: Int, total: Int, rows: [Int])
    case wrongWidth(expected: Int, got: Int, row: Int)
    case outputNotFinite(count: Int, total: Int, rows: [Int])
    case notAnArray(String)

    public var description: String {
        switch self {
        case .notFinite(let count, let total, let rows):
            return "\(count) of \(total) feature vectors hold NaN or infinite values (rows \(FeatureRows.list(rows))): "
                + "refused; drop them or fix the featurizer's input"
        case .notNumeric(let count, let total, let rows):
            return "\(count) of \(total) feature vectors hold values that are not numbers (rows \(FeatureRows.list(rows))): "
                + "refused; features must be JSON numbers"
        case .wrongWidth(let expected, let got, let row):
            return "feature vector \(row) has \(got) values, the model takes \(expected)"
        case .outputNotFinite(let count, let total, let rows):
            return "\(count) of \(total) feature vectors drive the model to non-finite outputs (rows \(FeatureRows.list(rows))): "
                + "refused; their values are far outside what the model was trained on"
        case .notAnArray(let why):
            return "the features file is not a JSON array of feature vectors (\(why))"
        }
    }
}

/// Feature vectors as read from JSON, with the rows that could not be read as numbers.
public struct ParsedRows: Equatable {
    public var rows: [[Double]]  // every row; a non-numeric cell reads as NaN here
    public var nonNumeric: [Int]  // rows holding a string, null or boolean
    public var nonFinite: [Int]  // rows holding NaN or +-Infinity

    /// Indices of the rows fit for a model.
    public var valid: [Int] {
        let bad = Set(nonNumeric).union(nonFinite)
        return rows.indices.filter { !bad.contains($0) }
    }
}

public enum FeatureRows {
    /// Decodes a JSON array of feature vectors. JSON5 is allowed so that Python's `NaN` and
    /// `Infinity` tokens are read (and then refused) rather than failing the whole file.
    public static func parse(json data: Data) throws -> ParsedRows {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        let cells: [[Cell]]
        do {
            cells = try decoder.decode([[Cell]].self, from: data)
        } catch {
            throw FeatureInputError.notAnArray(String(describing: error).prefix(160).description)
        }
        var parsed = ParsedRows(rows: [], nonNumeric: [], nonFinite: [])
        for (i, row) in cells.enumerated() {
            parsed.rows.append(row.map { $0.number ?? .nan })
            if row.contains(where: { $0.number == nil }) {
                parsed.nonNumeric.append(i)
            } else if row.contains(where: { !($0.number!.isFinite) }) {
                parsed.nonFinite.append(i)
            }
        }
        return parsed
    }

    /// Throws when any row holds a non-finite value or has the wrong width (nil: any width).
    public static func requireFinite(_ rows: [[Double]], dimension: Int?) throws {
        if let dimension = dimension, let i = rows.firstIndex(where: { $0.count != dimension }) {
            throw FeatureInputError.wrongWidth(expected: dimension, got: rows[i].count, row: i)
        }
        let bad = nonFiniteRows(rows)
        if !bad.isEmpty { throw FeatureInputError.notFinite(count: bad.count, total: rows.count, rows: bad) }
    }

    public static func nonFiniteRows(_ rows: [[Double]]) -> [Int] {
        rows.indices.filter { rows[$0].contains { !$0.isFinite } }
    }

    static func list(_ rows: [Int]) -> String {
        rows.prefix(5).map(String.init).joined(separator: ", ") + (rows.count > 5 ? ", ..." : "")
    }

    /// One JSON value of a feature vector: a number, or something that is not one.
    enum Cell: Decodable {
        case number(Double)
        case notNumber

        var number: Double? {
            if case .number(let v) = self { return v }
            return nil
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() || (try? c.decode(Bool.self)) != nil {
                self = .notNumber
            } else if let v = try? c.decode(Double.self) {
                self = .number(v)
            } else {
                self = .notNumber
            }
        }
    }
}
