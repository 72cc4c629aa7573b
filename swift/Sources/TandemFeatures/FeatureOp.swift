import Foundation

/// One step of a spec's pipeline as the JSON holds it.
struct SpecStep {
    let index: Int
    let op: String
    let version: Int
    let kind: String
    let inputs: [String]
    let outputs: [String]
    let params: [String: Any]
    let entry: [String: Any]

    /// A problem with this step, said with its position and op.
    func error(_ what: String) -> FeatureError { FeatureError("step \(index) (\(op)): \(what)") }

    /// params.statistics as `S`'s cases, in the listed order; an unknown one refused naming those the op has.
    func statistics<S: RawRepresentable & CaseIterable>(_: S.Type) throws -> [S] where S.RawValue == String {
        try param("statistics", as: [String].self).map {
            guard let s = S(rawValue: $0) else {
                throw error("unknown statistic \($0) (\(op) v\(version) has \(S.allCases.map(\.rawValue).sorted()))")
            }
            return s
        }
    }

    func param<T>(_ name: String, as type: T.Type) throws -> T {
        guard let value = params[name] else { throw error("params.\(name) is missing") }
        guard let typed = value as? T else { throw error("params.\(name) is not a \(T.self)") }
        return typed
    }
}

/// The series and features the pipeline has produced so far, while a spec is compiled: ops resolve
/// their inputs to indices here once, so running a window touches no dictionary.
struct CompileContext {
    let sampleRateHz: Double
    private(set) var seriesIndex: [String: Int] = [:]
    private(set) var seriesLength: [Int] = []
    private(set) var featureNames: [String] = []

    init(sampleRateHz: Double) { self.sampleRateHz = sampleRateHz }

    func input(_ name: String, of step: SpecStep) throws -> Int {
        guard let i = seriesIndex[name] else { throw step.error("reads unknown series \(name)") }
        return i
    }

    func inputs(of step: SpecStep) throws -> [Int] { try step.inputs.map { try input($0, of: step) } }

    func length(_ index: Int) -> Int { seriesLength[index] }

    mutating func addSeries(_ name: String, length: Int, by step: SpecStep?) throws -> Int {
        if seriesIndex[name] != nil {
            throw step?.error("produces series \(name) twice") ?? FeatureError("channel \(name) is named twice")
        }
        seriesIndex[name] = seriesLength.count
        seriesLength.append(length)
        return seriesLength.count - 1
    }

    /// One output series per input series, of the same length (element-wise ops): (input, output) indices.
    mutating func addElementwiseSeries(of step: SpecStep) throws -> [(Int, Int)] {
        try zip(step.inputs, step.outputs).map { src, dst in
            let s = try input(src, of: step)
            return (s, try addSeries(dst, length: length(s), by: step))
        }
    }

    mutating func addFeatures(_ names: [String], by step: SpecStep) throws {
        for name in names where featureNames.contains(name) { throw step.error("produces feature \(name) twice") }
        featureNames += names
    }
}

/// A feature operation: built once from its spec entry, then run on every window.
protocol FeatureOp {
    /// The op's name and version in feature_spec.json (the Python module's OP and VERSION).
    static var name: String { get }
    static var version: Int { get }
    /// "series" (adds series) or "features" (appends scalars to the feature vector).
    static var kind: String { get }
    init(step: SpecStep, context: inout CompileContext) throws
    func apply(_ series: inout [[Double]], _ features: inout [Double])
}

/// Every op this TandemKit implements. A spec naming anything else, or another version, is refused.
let featureOps: [String: FeatureOp.Type] = Dictionary(uniqueKeysWithValues: ([
    LowpassOp.self, DifferenceOp.self, MagnitudeOp.self, JerkOp.self, Log1pOp.self, StatsOp.self, RobustOp.self,
    SpectrumOp.self, AngleOp.self, CorrelationOp.self, ValueOp.self,
] as [FeatureOp.Type]).map { ($0.name, $0) })
