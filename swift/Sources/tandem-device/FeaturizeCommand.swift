import Foundation
import TandemKit

// tandem-device featurize --spec feature_spec.json --windows FILE [--model-input] [--repeat N]
// FILE: a JSON array of windows, each [t][c] in the spec's channel order (for a tabular task a row
// [c] is a window of one sample). Prints the feature vectors (or, with --model-input, what the app
// gives Core ML) as a JSON array, every float in its shortest round-trip form. --repeat N times N
// passes over the windows instead and prints {"windows", "seconds", "windows_per_second"}.
func featurizeCommand(_ args: [String]) throws -> Int32 {
    var options: [String: String] = [:]
    var flags = Set<String>()
    var i = 0
    while i < args.count {
        let arg = args[i]
        switch arg {
        case "--spec", "--windows", "--repeat":
            guard i + 1 < args.count else { throw FeatureError("\(arg) needs a value") }
            options[arg] = args[i + 1]
            i += 2
        case "--model-input":
            flags.insert(arg)
            i += 1
        default:
            throw FeatureError("unknown option \(arg): usage: featurize --spec FILE --windows FILE [--model-input] [--repeat N]")
        }
    }
    guard let specPath = options["--spec"], let windowsPath = options["--windows"] else {
        throw FeatureError("usage: featurize --spec feature_spec.json --windows FILE [--model-input] [--repeat N]")
    }
    let featurizer = try Featurizer(specURL: URL(fileURLWithPath: specPath))
    let windows = try readWindows(windowsPath, for: featurizer)

    if let repeatText = options["--repeat"] {
        guard let passes = Int(repeatText), passes > 0 else { throw FeatureError("--repeat needs a positive integer") }
        var checksum = 0.0  // keeps the optimizer from dropping the work
        let elapsed = try ContinuousClock().measure {
            for _ in 0..<passes {
                for w in windows { checksum += try featurizer.features(window: w)[0] }
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let count = passes * windows.count
        print("{\"windows\": \(count), \"seconds\": \(seconds), \"windows_per_second\": \(Double(count) / seconds), "
              + "\"checksum_finite\": \(checksum.isFinite)}")
        return 0
    }

    var lines: [String] = []
    lines.reserveCapacity(windows.count)
    for (n, w) in windows.enumerated() {
        let vector: [Double]
        do {
            vector = flags.contains("--model-input") ? try featurizer.modelInput(window: w) : try featurizer.features(window: w)
        } catch let error as FeatureError {
            throw FeatureError("window \(n): \(error.description)")
        }
        lines.append("[" + vector.map { $0.description }.joined(separator: ", ") + "]")
    }
    print("[" + lines.joined(separator: ",\n ") + "]")
    return 0
}

/// One element of the windows file: a window [t][c], or a tabular row [c].
private enum WindowJSON: Decodable {
    case window([[Double]])
    case row([Double])

    init(from decoder: Decoder) throws {
        let value = try decoder.singleValueContainer()
        if let window = try? value.decode([[Double]].self) { self = .window(window) } else { self = .row(try value.decode([Double].self)) }
    }
}

/// The windows of FILE as [window][t][c]; a tabular task's rows become windows of one sample. Strings,
/// booleans and nulls are refused (never coerced).
private func readWindows(_ path: String, for featurizer: Featurizer) throws -> [[[Double]]] {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw FeatureError("cannot read the windows file \(path): \(error.localizedDescription)")
    }
    let items: [WindowJSON]
    do { items = try JSONDecoder().decode([WindowJSON].self, from: data) } catch {
        let at = (error as? DecodingError).flatMap { e -> Int? in
            guard case .dataCorrupted(let c) = e, let key = c.codingPath.first else { return nil }
            return key.intValue
        }
        throw FeatureError("\(path) is not a JSON array of windows of numbers"
                           + (at.map { " (window \($0) is not)" } ?? "") + ": each window is [t][c], or a row [c] for a tabular task")
    }
    return try items.enumerated().map { (w, item) -> [[Double]] in
        switch item {
        case .window(let window): return window
        case .row(let row):
            guard featurizer.kind == "tabular" else {
                throw FeatureError("window \(w) is a row of \(row.count) values: a \(featurizer.kind) window is [t][c]")
            }
            return [row]
        }
    }
}
