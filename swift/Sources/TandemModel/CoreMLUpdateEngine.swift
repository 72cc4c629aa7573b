// The UpdateEngine an app uses on Apple platforms: Core ML's MLUpdateTask on the compiled base
// model, the held-out loss and each held-out row's error measured by the progress handler at each
// epoch's end (HeldOutLoss.check through CoreMLPredictor, as on the base); and the KNNEngine:
// MLUpdateTask on the compiled k-NN personal model. (Not compiled on Linux, where GoldenTraceEngine
// replays a release's trace and InterpretedKNNEngine computes the k-NN instead.)
#if canImport(CoreML)
import CoreML
import Foundation

public struct CoreMLUpdateEngine: UpdateEngine {
    public typealias Personal = MLModel
    public let baseURL: URL  // the compiled base model (.mlmodelc)
    public let base: CoreMLPredictor
    /// The training input holding the target: the label (a classifier) or "<output>_true" (a regressor).
    public let targetName: String

    public init(compiledModelAt url: URL) throws {
        let predictor = try CoreMLPredictor(compiledModelAt: url)
        let inputName = predictor.inputName
        let training = predictor.model.modelDescription.trainingInputDescriptionsByName.keys
        guard let target = training.first(where: { $0 != inputName }) else {
            throw ModelRuntimeError.missingOutput("a training target input (is the model updatable?)")
        }
        baseURL = url
        base = predictor
        targetName = target
    }

    public func baseCheck(heldOut: LabelledRows) throws -> HeldOutCheck {
        try HeldOutLoss.check(base, heldOut)
    }

    /// Core ML returns NaN outputs for a row it overflows on: those rows.
    public func baseOverflowRows(_ rows: [[Double]]) throws -> [Int] {
        try base.overflowRows(rows)
    }

    func examples(_ data: LabelledRows) throws -> MLArrayBatchProvider {
        var providers: [MLFeatureProvider] = []
        for i in 0..<data.count {
            var features: [String: MLFeatureValue] = [
                base.inputName: try base.featureProvider(data.rows[i]).featureValue(for: base.inputName)!,
            ]
            switch data.targets {
            case .classes(let labels): features[targetName] = MLFeatureValue(string: labels[i])
            case .values(let values):
                let target = try MLMultiArray(shape: [1], dataType: .double)
                target[0] = NSNumber(value: values[i])
                features[targetName] = MLFeatureValue(multiArray: target)
            }
            providers.append(try MLDictionaryFeatureProvider(dictionary: features))
        }
        return MLArrayBatchProvider(array: providers)
    }

    public func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                       onEpochEnd: @escaping (Int, HeldOutCheck) -> Bool) throws -> MLModel? {
        try FeatureRows.requireFinite(training.rows, dimension: base.inputDimension)
        let configuration = MLModelConfiguration()
        configuration.parameters = [.epochs: epochs, .learningRate: settings.learningRate,
                                    .miniBatchSize: settings.miniBatchSize, .shuffle: settings.shuffle]
        var personal: MLModel?, failure: Error?, epoch = 0
        let done = DispatchSemaphore(value: 0)
        do {
            // Checked after every mini-batch: a non-finite training loss means a weight went
            // non-finite; the task is cancelled and the policy keeps the base.
            let handlers = MLUpdateProgressHandlers(forEvents: [.miniBatchEnd, .epochEnd], progressHandler: { context in
                if let stepLoss = context.metrics[.lossValue] as? Double, !stepLoss.isFinite {
                    failure = UpdateDiverged(epoch: epoch + 1)
                    context.task.cancel()
                    return
                }
                guard context.event == .epochEnd else { return }
                epoch += 1
                let check: HeldOutCheck
                do {
                    check = try heldOut.map { try HeldOutLoss.check(try CoreMLPredictor(model: context.model), $0) }
                        ?? HeldOutCheck(loss: context.metrics[.lossValue] as? Double ?? .nan, errors: [])
                } catch FeatureInputError.outputNotFinite(_, _, _) {
                    failure = UpdateDiverged(epoch: epoch)  // the weights went non-finite
                    context.task.cancel()
                    return
                } catch {
                    failure = error
                    context.task.cancel()
                    return
                }
                if check.loss.isInfinite || (heldOut != nil && !check.loss.isFinite) {
                    failure = UpdateDiverged(epoch: epoch)
                    context.task.cancel()
                } else if onEpochEnd(epoch, check) {
                    personal = context.model
                    context.task.cancel()
                }
            }, completionHandler: { context in
                if personal == nil && failure == nil {
                    if let error = context.task.error { failure = error } else { personal = context.model }
                }
                done.signal()
            })
            let task = try MLUpdateTask(forModelAt: baseURL, trainingData: try examples(training),
                                        configuration: configuration, progressHandlers: handlers)
            task.resume()
            done.wait()
        }
        if let failure = failure { throw failure }  // UpdateDiverged: the policy keeps the base
        return personal
    }
}

/// The k-NN candidate on Apple platforms: MLUpdateTask on the compiled personal_knn.mlmodel stores
/// each row's embedding and label (no epochs, no progress to watch); the held-out rows' labels come
/// from the updated model through CoreMLPredictor.
public struct CoreMLKNNEngine: KNNEngine {
    public typealias Personal = MLModel
    /// The compiled pipeline's URL, its input and its training target (the label); `examples`.
    let pipeline: CoreMLUpdateEngine

    public init(compiledModelAt url: URL) throws {
        pipeline = try CoreMLUpdateEngine(compiledModelAt: url)
    }

    public func fit(_ training: LabelledRows) throws -> MLModel {
        try FeatureRows.requireFinite(training.rows, dimension: pipeline.base.inputDimension)
        guard training.count > 0 else { return pipeline.base.model }
        var personal: MLModel?, failure: Error?
        let done = DispatchSemaphore(value: 0)
        let task = try MLUpdateTask(forModelAt: pipeline.baseURL, trainingData: try pipeline.examples(training),
                                    configuration: MLModelConfiguration(), completionHandler: { context in
            if let error = context.task.error { failure = error } else { personal = context.model }
            done.signal()
        })
        task.resume()
        done.wait()
        if let failure = failure { throw failure }
        guard let model = personal else { throw UpdateEngineError.notUpdatable("the k-NN update returned no model") }
        return model
    }

    public func heldOutErrors(training: LabelledRows, heldOut: LabelledRows) throws -> [Double] {
        let predicted = try CoreMLPredictor(model: try fit(training)).predict(heldOut.rows).labels
        return zip(predicted, heldOut.targets.groups).map { $0 == $1 ? 0 : 1 }
    }
}
#endif
