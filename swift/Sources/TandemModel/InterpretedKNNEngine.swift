// The k-NN personal model's update computed by TandemKit: the Swift twin of tandem/device/knn.py's
// `knn_update`, which is what MLUpdateTask does to a release's personal_knn.mlmodel (a pipeline of
// the released network's layers before its head, whose output is the embedding, then an updatable
// k-nearest-neighbours classifier): each labelled row's embedding, rounded to float32 as the spec
// stores it, is appended to the index with its label, in the given order. No epochs, loss or
// optimizer, so nothing to replay: Linux computes exactly what a phone stores.
import Foundation

public final class InterpretedKNNEngine: KNNEngine {
    public typealias Personal = InterpretedModel
    public let base: InterpretedModel  // the pipeline as the release ships it (its index empty)
    let embedding: [ModelSpec]  // the stages before the k-NN
    let knnStage: ModelSpec

    public init(base: InterpretedModel) throws {
        guard case .pipelineClassifier(let stages)? = base.spec.type, let last = stages.last,
              case .kNearestNeighborsClassifier? = last.type else {
            throw UpdateEngineError.notUpdatable("not a k-NN personal model (a pipeline classifier ending in a k-NN classifier)")
        }
        self.base = base
        embedding = Array(stages.dropLast())
        knnStage = last
    }

    public convenience init(contentsOf url: URL) throws {
        try self.init(base: try InterpretedModel(contentsOf: url))
    }

    /// Each row's embedding: what the stages before the k-NN feed it.
    public func embeddings(_ rows: [[Double]]) throws -> [[Double]] {
        try FeatureRows.requireFinite(rows, dimension: base.inputDimension)
        var features: [String: Batch] = [base.inputName: rows]
        let interpreter = SpecInterpreter(base.spec)
        for stage in embedding { features.merge(try interpreter.run(stage, features)) { $1 } }
        let name = knnStage.description.inputs.first?.name ?? ""
        guard let x = features[name] else { throw ModelRuntimeError.missingOutput(name) }
        return x
    }

    /// The pipeline with `training`'s embeddings and labels appended to the index, in the given order.
    /// Labels must be among the model's classes; an embedding that is not finite is refused.
    public func update(_ training: LabelledRows) throws -> InterpretedModel {
        guard case .classes(let labels) = training.targets else { throw UpdateEngineError.notUpdatable("a k-NN stores class labels") }
        let unknown = UpdatePolicyRunner.sortedClasses(labels.filter { !base.classLabels.contains($0) })
        guard unknown.isEmpty else { throw UpdateEngineError.unknownLabels(unknown, classes: base.classLabels) }
        let z = try embeddings(training.rows)
        let bad = FeatureRows.nonFiniteRows(z)
        if !bad.isEmpty { throw FeatureInputError.outputNotFinite(count: bad.count, total: z.count, rows: bad) }
        guard case .kNearestNeighborsClassifier(var knn)? = knnStage.type, case .pipelineClassifier(var stages)? = base.spec.type else {
            throw UpdateEngineError.notUpdatable("not a k-NN personal model")
        }
        knn.samples += z.map { $0.map { Double(Float($0)) } }  // the index stores float32
        knn.labels = .strings(knn.labels.asStrings + labels)
        stages[stages.count - 1].type = .kNearestNeighborsClassifier(knn)
        var spec = base.spec
        spec.type = .pipelineClassifier(stages)
        return try InterpretedModel(spec: spec)
    }

    public func fit(_ training: LabelledRows) throws -> InterpretedModel { try update(training) }

    public func heldOutErrors(training: LabelledRows, heldOut: LabelledRows) throws -> [Double] {
        let predicted = try update(training).predict(heldOut.rows).labels
        return zip(predicted, heldOut.targets.groups).map { $0 == $1 ? 0 : 1 }
    }
}
