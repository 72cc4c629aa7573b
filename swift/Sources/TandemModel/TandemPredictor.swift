// What the app asks of a model, whoever runs it: Core ML on Apple platforms (CoreMLPredictor),
// the spec interpreter everywhere (InterpretedModel). Rows are feature vectors in the release's
// feature order; standardization is inside the model.
import Foundation

public enum ModelKind: String, Codable, Equatable {
    case classifier, regressor
}

/// Predictions for a batch of rows. A classifier fills `labels` and `probabilities` (in
/// `classLabels` order); a regressor fills `values` (its output array per row).
public struct Predictions: Equatable {
    public var kind: ModelKind
    public var classLabels: [String] = []
    public var labels: [String] = []
    public var probabilities: [[Double]] = []
    public var values: [[Double]] = []
}

public protocol TandemPredictor {
    var kind: ModelKind { get }
    var classLabels: [String] { get }
    /// The feature vector's length the model takes (nil when the spec does not say).
    var inputDimension: Int? { get }
    /// Predictions for rows already screened by `FeatureRows.requireFinite` (implementations call it).
    func predict(_ rows: [[Double]]) throws -> Predictions
    /// The rows (all finite) whose outputs are not finite (1e308 overflows a network): the update
    /// policy skips them instead of refusing them all (runtime.py's `usable_rows`).
    func overflowRows(_ rows: [[Double]]) throws -> [Int]
}

extension TandemPredictor {
    /// From the predictions: the rows `predict` refuses for non-finite outputs, or returns them for.
    public func overflowRows(_ rows: [[Double]]) throws -> [Int] {
        do {
            let p = try predict(rows)
            return FeatureRows.nonFiniteRows(kind == .classifier ? p.probabilities : p.values)
        } catch FeatureInputError.outputNotFinite(_, _, let bad) {
            return bad
        }
    }
}

/// The spec interpreter behind the TandemPredictor protocol: a release's `.mlmodel` on any platform
/// (its network, or its k-NN personal model: a pipeline ending in a k-nearest-neighbours classifier).
public struct InterpretedModel: TandemPredictor {
    public let spec: ModelSpec
    /// A classifier's classes in the order of the probabilities: the network's, or the k-NN stage's
    /// (its metadata's "tandem.class_labels"); [] for a regressor.
    public let classLabels: [String]
    private let interpreter: SpecInterpreter

    public init(spec: ModelSpec) throws {
        guard let type = spec.type else { throw ModelSpecError.notAModel }
        switch type {
        case .other, .scaler, .kNearestNeighborsClassifier: throw ModelRuntimeError.unsupportedModel(type.name)
        default: break
        }
        self.spec = spec
        self.interpreter = SpecInterpreter(spec)
        classLabels = Self.kind(spec) != .classifier ? []
            : SpecInterpreter.knnStage(spec).map(NeighbourVote.classLabels)
                ?? SpecInterpreter.classifierNetwork(spec)?.classLabels.asStrings ?? []
        if kind == .classifier && classLabels.isEmpty { throw ModelRuntimeError.noClassLabels }
    }

    public init(contentsOf url: URL) throws {
        try self.init(spec: try ModelSpec(contentsOf: url))
    }

    public var kind: ModelKind { Self.kind(spec) }

    static func kind(_ spec: ModelSpec) -> ModelKind {
        switch spec.type {
        case .neuralNetworkClassifier, .pipelineClassifier: return .classifier
        default: return .regressor
        }
    }

    /// Whether this is a k-NN personal model (its label is the neighbours' vote, not the argmax).
    public var isKNN: Bool { SpecInterpreter.knnStage(spec) != nil }

    public var inputName: String { spec.description.inputs.first?.name ?? "" }

    public var inputDimension: Int? {
        let shape = spec.description.inputs.first?.shape ?? []
        return shape.isEmpty ? nil : shape.reduce(1, *)
    }

    public func predict(_ rows: [[Double]]) throws -> Predictions {
        try FeatureRows.requireFinite(rows, dimension: inputDimension)
        let out = try interpreter.run(spec, [inputName: rows])
        var result = Predictions(kind: kind)
        if kind == .classifier {
            let name = spec.description.predictedProbabilitiesName.isEmpty ? "classProbability" : spec.description.predictedProbabilitiesName
            guard let probabilities = out[name] else { throw ModelRuntimeError.missingOutput(name) }
            try Self.refuseNonFinite(probabilities, of: rows.count)
            result.classLabels = classLabels
            result.probabilities = probabilities
            if isKNN {  // the neighbours' vote, as the k-NN stage's label index (a tie in the shares: the nearest voter)
                let labelName = spec.description.predictedFeatureName.isEmpty ? "classLabel" : spec.description.predictedFeatureName
                guard let indices = out[labelName] else { throw ModelRuntimeError.missingOutput(labelName) }
                result.labels = indices.map { classLabels[Int($0[0])] }
            } else {  // the first maximum, as numpy's argmax
                result.labels = probabilities.map { p in classLabels[p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) } ?? 0] }
            }
        } else {
            guard let name = spec.description.outputs.first?.name, let values = out[name] else {
                throw ModelRuntimeError.missingOutput(spec.description.outputs.first?.name ?? "")
            }
            try Self.refuseNonFinite(values, of: rows.count)
            result.values = values
        }
        return result
    }

    /// As runtime.py's `usable_rows`: every output of every stage is checked, not only the last.
    public func overflowRows(_ rows: [[Double]]) throws -> [Int] {
        try FeatureRows.requireFinite(rows, dimension: inputDimension)
        guard !rows.isEmpty else { return [] }
        let out = try interpreter.run(spec, [inputName: rows])
        let bad = out.filter { $0.key != inputName && $0.value.count == rows.count }.values.flatMap(FeatureRows.nonFiniteRows)
        return Set(bad).sorted()
    }

    /// Finite but huge inputs (1e308) overflow inside the network: refuse, never return NaN.
    static func refuseNonFinite(_ outputs: Batch, of total: Int) throws {
        let bad = FeatureRows.nonFiniteRows(outputs)
        if !bad.isEmpty { throw FeatureInputError.outputNotFinite(count: bad.count, total: total, rows: bad) }
    }
}
