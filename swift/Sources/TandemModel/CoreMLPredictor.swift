// On Apple platforms the app runs the release's model with Core ML itself; this adapter gives it
// the same TandemPredictor protocol as the spec interpreter. (Not compiled on Linux.)
#if canImport(CoreML)
import CoreML
import Foundation

public struct CoreMLPredictor: TandemPredictor {
    public let model: MLModel
    public let kind: ModelKind
    public let classLabels: [String]
    public let inputName: String
    public let inputDimension: Int?
    /// The regressor's output (or the classifier's probabilities) feature name.
    let outputName: String
    let labelName: String
    /// A class missing from the probabilities: no votes in a k-NN personal model (0), else unknown (NaN).
    let missingProbability: Double

    /// `url`: a compiled model (`.mlmodelc`, e.g. `MLModel.compileModel(at:)` of a release's model.mlmodel).
    public init(compiledModelAt url: URL, configuration: MLModelConfiguration = MLModelConfiguration()) throws {
        try self.init(model: try MLModel(contentsOf: url, configuration: configuration))
    }

    public init(model: MLModel) throws {
        self.model = model
        let description = model.modelDescription
        guard let input = description.inputDescriptionsByName.values.first(where: { $0.type == .multiArray }) else {
            throw ModelRuntimeError.missingOutput("a multiArray input")
        }
        inputName = input.name
        inputDimension = input.multiArrayConstraint.map { $0.shape.reduce(1) { $0 * $1.intValue } }
        if let probabilities = description.predictedProbabilitiesName {
            kind = .classifier
            outputName = probabilities
            labelName = description.predictedFeatureName ?? "classLabel"
            // A k-NN personal model names its classes in its metadata (the probabilities' order, which
            // Core ML's own list, grown from the stored labels, need not follow).
            let creator = description.metadata[.creatorDefinedKey] as? [String: String]
            if let given = creator?[NeighbourVote.classLabelsKey],
               let labels = try? JSONDecoder().decode([String].self, from: Data(given.utf8)) {
                classLabels = labels
                missingProbability = 0
            } else {
                classLabels = (description.classLabels ?? []).map { "\($0)" }
                missingProbability = .nan
            }
        } else {
            kind = .regressor
            outputName = description.outputDescriptionsByName.keys.sorted().first ?? ""
            labelName = ""
            classLabels = []
            missingProbability = .nan
        }
    }

    func featureProvider(_ row: [Double]) throws -> MLFeatureProvider {
        let array = try MLMultiArray(shape: [NSNumber(value: row.count)], dataType: .double)
        for (i, v) in row.enumerated() { array[i] = NSNumber(value: v) }
        return try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
    }

    public func predict(_ rows: [[Double]]) throws -> Predictions {
        try FeatureRows.requireFinite(rows, dimension: inputDimension)
        var result = Predictions(kind: kind, classLabels: classLabels)
        for row in rows {
            let output = try model.prediction(from: try featureProvider(row))
            if kind == .classifier {
                let dict = output.featureValue(for: outputName)?.dictionaryValue ?? [:]
                result.probabilities.append(classLabels.map { dict[AnyHashable($0)]?.doubleValue ?? missingProbability })
                result.labels.append(output.featureValue(for: labelName)?.stringValue ?? "")
            } else {
                let value = output.featureValue(for: outputName)
                if let array = value?.multiArrayValue {
                    result.values.append((0..<array.count).map { array[$0].doubleValue })
                } else {
                    result.values.append([value?.doubleValue ?? .nan])
                }
            }
        }
        return result
    }
}
#endif
