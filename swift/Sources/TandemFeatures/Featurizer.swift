import Foundation

/// A release's feature_spec.json, compiled: raw windows in, the feature vector (and the model input) out.
public final class Featurizer {
    /// The spec format versions this featurizer implements.
    public static let supportedSpecVersions = [3]

    public let kind: String
    public let sampleRateHz: Double
    public let windowSamples: Int
    public let channels: [String]
    public let featureNames: [String]
    private let steps: [FeatureOp]
    private let seriesCount: Int

    public convenience init(specData: Data) throws {
        let json: Any
        do { json = try AnyJSON.parse(specData) } catch {
            throw FeatureError("the feature spec is not JSON: \(error.localizedDescription)")
        }
        guard let spec = json as? [String: Any] else { throw FeatureError("the feature spec is not a JSON object") }
        try self.init(spec: spec)
    }

    public convenience init(specURL: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: specURL) } catch {
            throw FeatureError("cannot read the feature spec \(specURL.path): \(error.localizedDescription)")
        }
        try self.init(specData: data)
    }

    public init(spec: [String: Any]) throws {
        guard let version = jsonInt(spec["version"]) else { throw FeatureError("the feature spec has no integer `version`") }
        guard Featurizer.supportedSpecVersions.contains(version) else {
            throw FeatureError("feature spec version \(version) is not supported (this TandemKit reads "
                               + "\(Featurizer.supportedSpecVersions)): update TandemKit")
        }
        guard let input = spec["input"] as? [String: Any], let kind = input["kind"] as? String,
              let rate = jsonDouble(input["sample_rate_hz"]),
              let window = jsonInt(input["window_samples"]), let channels = input["channels"] as? [String] else {
            throw FeatureError("the feature spec's `input` needs kind, sample_rate_hz, window_samples and channels")
        }
        guard kind == "sensor" || kind == "tabular" else { throw FeatureError("unknown input kind \(kind)") }
        guard window >= 1, rate > 0, rate.isFinite, !channels.isEmpty else {
            throw FeatureError("the feature spec's window (\(window) samples at \(rate) Hz, \(channels.count) channels) is empty")
        }
        guard let rawSteps = spec["steps"] as? [[String: Any]], !rawSteps.isEmpty else {
            throw FeatureError("the feature spec has no `steps`")
        }
        var context = CompileContext(sampleRateHz: rate)
        for name in channels { _ = try context.addSeries(name, length: window, by: nil) }
        var compiled: [FeatureOp] = []
        for (i, entry) in rawSteps.enumerated() {
            let step = try Featurizer.step(i, entry)
            guard let op = featureOps[step.op] else {
                throw FeatureError("step \(i): unknown feature op \(step.op) (this TandemKit has "
                                   + "\(featureOps.keys.sorted().joined(separator: ", "))): update TandemKit")
            }
            guard step.version == op.version else {
                throw step.error("version \(step.version) is not implemented (this TandemKit has version \(op.version)): update TandemKit")
            }
            guard step.kind == op.kind else { throw step.error("kind \(step.kind), but \(step.op) is a \(op.kind) op") }
            let before = context.featureNames.count
            compiled.append(try op.init(step: step, context: &context))
            if op.kind == "features", Array(context.featureNames[before...]) != step.outputs {
                throw step.error("outputs \(step.outputs) differ from the names the op gives \(Array(context.featureNames[before...]))")
            }
        }
        if let names = spec["feature_names"] as? [String], names != context.featureNames {
            throw FeatureError("the spec's feature_names differ from what its steps produce (\(context.featureNames.count) features)")
        }
        self.kind = kind
        self.sampleRateHz = rate
        self.windowSamples = window
        self.channels = channels
        self.featureNames = context.featureNames
        self.steps = compiled
        self.seriesCount = context.seriesLength.count
    }

    private static func step(_ i: Int, _ entry: [String: Any]) throws -> SpecStep {
        guard let op = entry["op"] as? String else { throw FeatureError("step \(i) names no op") }
        guard let version = jsonInt(entry["version"]) else {
            throw FeatureError("step \(i) (\(op)) has no integer version: refused rather than guessed")
        }
        guard let inputs = entry["inputs"] as? [String] else { throw FeatureError("step \(i) (\(op)) has no inputs") }
        return SpecStep(index: i, op: op, version: version, kind: entry["kind"] as? String ?? "",
                        inputs: inputs, outputs: entry["outputs"] as? [String] ?? [],
                        params: entry["params"] as? [String: Any] ?? [:], entry: entry)
    }

    /// The feature vector of one window `[t][c]` (window_samples x channels, the spec's channel order),
    /// in `featureNames` order.
    public func features(window: [[Double]]) throws -> [Double] {
        guard window.count == windowSamples else {
            throw FeatureError("a window is \(windowSamples) samples x \(channels.count) channels, got \(window.count) samples")
        }
        var series = [[Double]](repeating: [], count: seriesCount)
        for c in 0..<channels.count { series[c].reserveCapacity(windowSamples) }
        for (t, sample) in window.enumerated() {
            guard sample.count == channels.count else {
                throw FeatureError("a window is \(windowSamples) samples x \(channels.count) channels, sample \(t) has \(sample.count) values")
            }
            for (c, v) in sample.enumerated() {
                guard v.isFinite else { throw FeatureError("sample \(t) of channel \(channels[c]) is \(v): only finite values can be featurized") }
                series[c].append(v)
            }
        }
        var out: [Double] = []
        out.reserveCapacity(featureNames.count)
        for step in steps { step.apply(&series, &out) }
        // finite inputs within a channel's bounds give finite features; anything else must not reach the model
        if let i = out.firstIndex(where: { !$0.isFinite }) {
            throw FeatureError("feature \(featureNames[i]) is \(out[i]): an input is far outside its channel's range")
        }
        return out
    }

    /// A tabular row (one value per column, the spec's channel order): a window of one sample.
    public func features(row: [Double]) throws -> [Double] { try features(window: [row]) }

    /// What the app gives Core ML: spec version 3 says the raw feature vector (standardization is inside
    /// the model).
    public func modelInput(features: [Double]) -> [Double] { features }

    public func modelInput(window: [[Double]]) throws -> [Double] { modelInput(features: try features(window: window)) }
}
