// tandem-device predict --model model.mlmodel --features FILE [--skip-invalid]
// FILE: a JSON array of feature vectors (the release's feature order). Prints the predictions as
// JSON: a classifier's labels and probabilities (class-label order), a regressor's values. A row
// with NaN, an infinity or a non-number is refused with a count (exit 1); with --skip-invalid it
// is skipped instead (null in its place, counted on stderr).
import Foundation
import TandemKit

func predictCommand(_ args: [String]) throws -> Int32 {
    let options = try ModelCommandArguments(args, valued: ["--model", "--features"], switches: ["--skip-invalid"])
    let model = try InterpretedModel(contentsOf: try options.file("--model"))
    let parsed = try FeatureRows.parse(json: try Data(contentsOf: try options.file("--features")))
    if !options.has("--skip-invalid") {
        if !parsed.nonNumeric.isEmpty {
            throw FeatureInputError.notNumeric(count: parsed.nonNumeric.count, total: parsed.rows.count, rows: parsed.nonNumeric)
        }
        if !parsed.nonFinite.isEmpty {
            throw FeatureInputError.notFinite(count: parsed.nonFinite.count, total: parsed.rows.count, rows: parsed.nonFinite)
        }
    }
    let valid = parsed.valid
    let predictions = try model.predict(valid.map { parsed.rows[$0] })
    var slot = [Int?](repeating: nil, count: parsed.rows.count)  // row -> its prediction's index
    for (k, row) in valid.enumerated() { slot[row] = k }
    let skipped = parsed.rows.indices.filter { slot[$0] == nil }
    var fields: [(String, JSONOut)] = [("kind", .string(model.kind.rawValue)), ("rows", .int(parsed.rows.count)),
                                       ("skipped_rows", .ints(skipped))]
    if model.kind == .classifier {
        fields.append(("class_labels", .strings(model.classLabels)))
        fields.append(("labels", .array(slot.map { $0.map { .string(predictions.labels[$0]) } ?? .null })))
        fields.append(("probabilities", .array(slot.map { $0.map { .numbers(predictions.probabilities[$0]) } ?? .null })))
    } else {
        fields.append(("values", .array(slot.map { $0.map { .numbers(predictions.values[$0]) } ?? .null })))
    }
    print(JSONOut.object(fields).text)
    if !skipped.isEmpty {
        printError("skipped \(skipped.count) of \(parsed.rows.count) feature vectors: \(parsed.nonFinite.count) non-finite, "
                   + "\(parsed.nonNumeric.count) not numbers")
    }
    return 0
}
