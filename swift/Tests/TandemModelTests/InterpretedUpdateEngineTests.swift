import XCTest
@testable import TandemModel

/// TandemKit's own update (InterpretedUpdateEngine) against the Python runtime's recorded policy
/// traces: the same held-out losses per epoch, the same chosen epochs, the same personal model.
final class InterpretedUpdateEngineTests: XCTestCase {
    private func run(_ trace: String, _ model: String) throws -> (PolicyTrace, PolicyOutcome<InterpretedModel>, InterpretedModel) {
        let golden = try PolicyTrace.load(Data(contentsOf: try fixtureURL(trace)))
        let base = try InterpretedModel(contentsOf: try fixtureURL(model))
        let outcome = try UpdatePolicyRunner.personalize(golden.data, policy: golden.policy,
                                                         engine: try InterpretedUpdateEngine(base: base))
        return (golden, outcome, base)
    }

    private func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .nan
    }

    func testClassifierUpdateReproducesTheTrace() throws {
        let (golden, outcome, _) = try run("classifier_policy_accepted.json", "classifier.mlmodel")
        XCTAssertEqual(outcome.epochs, golden.epochs)
        XCTAssertGreaterThan(outcome.epochs, 0)
        XCTAssertEqual(outcome.bestEpoch, golden.bestEpoch)
        XCTAssertEqual(outcome.acceptance, golden.acceptance)
        XCTAssertEqual(outcome.holdoutErrors, golden.holdoutErrors, "each held-out row right or wrong after each epoch")
        XCTAssertLessThanOrEqual(maxDifference(outcome.holdoutLosses, golden.holdoutLosses), 1e-12)
        let personal = try XCTUnwrap(outcome.personal)
        let got = try personal.predict(golden.inputs).probabilities.flatMap { $0 }
        XCTAssertLessThanOrEqual(maxDifference(got, try XCTUnwrap(golden.probabilitiesAfter).flatMap { $0 }), 1e-9)
    }

    func testARejectedClassifierUpdateKeepsTheBase() throws {
        let (golden, outcome, base) = try run("classifier_policy.json", "classifier.mlmodel")
        XCTAssertEqual(golden.acceptance?.accepted, false)
        XCTAssertEqual(outcome.epochs, 0)
        XCTAssertNil(outcome.personal)
        XCTAssertEqual(outcome.bestEpoch, golden.bestEpoch)
        XCTAssertEqual(outcome.acceptance, golden.acceptance)
        XCTAssertEqual(outcome.holdoutErrors, golden.holdoutErrors)
        let got = try base.predict(golden.inputs).probabilities.flatMap { $0 }
        XCTAssertLessThanOrEqual(maxDifference(got, try XCTUnwrap(golden.probabilitiesAfter).flatMap { $0 }), 1e-9, "the base's outputs")
    }

    func testRegressorUpdateReproducesTheTrace() throws {
        let (golden, outcome, _) = try run("regressor_policy.json", "regressor.mlmodel")
        XCTAssertEqual(outcome.epochs, golden.epochs)
        XCTAssertEqual(outcome.bestEpoch, golden.bestEpoch)
        XCTAssertEqual(outcome.acceptance, golden.acceptance)
        XCTAssertLessThanOrEqual(maxDifference(outcome.holdoutLosses, golden.holdoutLosses), 1e-12)
        XCTAssertEqual(outcome.holdoutErrors.count, golden.holdoutErrors.count)
        XCTAssertLessThanOrEqual(maxDifference(outcome.holdoutErrors.flatMap { $0 }, golden.holdoutErrors.flatMap { $0 }), 1e-12,
                                 "each held-out row's absolute error after each epoch")
        let personal = try XCTUnwrap(outcome.personal)
        let got = try personal.predict(golden.inputs).values.map { $0[0] }
        XCTAssertLessThanOrEqual(maxDifference(got, try XCTUnwrap(golden.predictionsAfter)), 1e-9)
    }

    /// Each innerProduct layer's weights and bias, by name.
    private func denseParameters(_ model: InterpretedModel) -> [String: [Double]] {
        let network: NeuralNetwork
        switch model.spec.type {
        case .neuralNetworkClassifier(let nn)?, .neuralNetworkRegressor(let nn)?, .neuralNetwork(let nn)?: network = nn
        default: return [:]
        }
        var out = [String: [Double]]()
        for layer in network.layers {
            if case .innerProduct(_, _, let weights, let bias, _) = layer.kind { out[layer.name] = weights.values + (bias?.values ?? []) }
        }
        return out
    }

    /// A release whose only updatable layer is the calibration after the head (task.yaml
    /// `model.updatable: calibration`): the same trace, and only that layer moves.
    func testCalibrationUpdatesReproduceTheirTracesAndMoveTheCalibrationAlone() throws {
        for name in ["classifier", "regressor"] {
            let (golden, outcome, base) = try run("\(name)_calibration_policy.json", "\(name)_calibration.mlmodel")
            XCTAssertEqual(outcome.epochs, golden.epochs, name)
            XCTAssertGreaterThan(outcome.epochs, 0, name)
            XCTAssertEqual(outcome.acceptance, golden.acceptance, name)
            XCTAssertLessThanOrEqual(maxDifference(outcome.holdoutLosses, golden.holdoutLosses), 1e-12, name)
            let personal = try XCTUnwrap(outcome.personal)
            let got = try personal.predict(golden.inputs)
            if name == "classifier" {
                XCTAssertLessThanOrEqual(maxDifference(got.probabilities.flatMap { $0 },
                                                       try XCTUnwrap(golden.probabilitiesAfter).flatMap { $0 }), 1e-9)
            } else {
                XCTAssertLessThanOrEqual(maxDifference(got.values.map { $0[0] }, try XCTUnwrap(golden.predictionsAfter)), 1e-9)
            }
            let before = denseParameters(base), after = denseParameters(personal)
            XCTAssertEqual(Set(before.keys), ["body.0", "head", "calibration"], name)
            XCTAssertEqual(after["head"], before["head"], name)
            XCTAssertEqual(after["body.0"], before["body.0"], name)
            XCTAssertNotEqual(after["calibration"], before["calibration"], name)
        }
    }

    func testADivergingUpdateThrowsAfterTheStepAndThePolicyKeepsTheBase() throws {
        let golden = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy.json")))
        let base = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        let engine = try InterpretedUpdateEngine(base: base)
        // Finite rows the base handles, but one step at this rate sends the weights past float32.
        let huge = LabelledRows(rows: golden.inputs.map { $0.map { $0 * 1e150 } }, targets: golden.targets)
        XCTAssertNoThrow(try base.predict(huge.rows))
        XCTAssertThrowsError(try engine.update(training: huge, epochs: 3, settings: UpdateSettings(learningRate: 1.0, miniBatchSize: 8),
                                               heldOut: nil, onEpochEnd: { _, _ in false })) { error in
            XCTAssertEqual(error as? UpdateDiverged, UpdateDiverged(epoch: 1))
        }
        var policy = golden.policy
        policy.learningRate = 1.0
        let outcome = try UpdatePolicyRunner.personalize(huge, policy: policy, engine: engine)
        XCTAssertTrue(outcome.keptBase)
        XCTAssertNil(outcome.personal)
        XCTAssertTrue(outcome.note.contains("diverged"), outcome.note)
    }

    func testWhatItRefuses() throws {
        let base = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        let engine = try InterpretedUpdateEngine(base: base)
        let rows = LabelledRows(rows: [Array(repeating: 0, count: 8)], targets: .classes(["sit"]))
        XCTAssertThrowsError(try engine.update(training: rows, epochs: 1, settings: UpdateSettings(learningRate: 0.1, miniBatchSize: 8, shuffle: true),
                                               heldOut: nil, onEpochEnd: { _, _ in false })) {
            XCTAssertEqual($0 as? UpdateEngineError, .shuffleUnsupported)
        }
        var bad = rows
        bad.rows[0][3] = .nan
        XCTAssertThrowsError(try engine.update(training: bad, epochs: 1, settings: UpdateSettings(learningRate: 0.1, miniBatchSize: 8),
                                               heldOut: nil, onEpochEnd: { _, _ in false })) {
            XCTAssertEqual($0 as? FeatureInputError, .notFinite(count: 1, total: 1, rows: [0]))
        }
        var frozen = base.spec
        if case .neuralNetworkClassifier(var nn)? = frozen.type {
            for i in nn.layers.indices { nn.layers[i].isUpdatable = false }
            frozen.type = .neuralNetworkClassifier(nn)
        }
        XCTAssertThrowsError(try InterpretedUpdateEngine(base: try InterpretedModel(spec: frozen))) {
            XCTAssertEqual($0 as? UpdateEngineError, .notUpdatable("no updatable layer in the network"))
        }
    }

    /// The policy with the k-NN candidate computed end to end: task A and task B by the interpreted
    /// update, the k-NN model by InterpretedKNNEngine; the personal model each user gets (the k-NN
    /// pipeline holding every row, the fine-tune, the base) gives the trace's probabilities.
    func testKNNPolicyTracesReproduceTheMethodAndThePersonalModel() throws {
        let base = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        let knn = try InterpretedKNNEngine(contentsOf: try fixtureURL("classifier_knn.mlmodel"))
        for method in [PersonalizationMethod.knn, .fineTune, .base] {
            let golden = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy_knn_\(method.rawValue).json")))
            let outcome = try UpdatePolicyRunner.personalize(golden.data, policy: golden.policy,
                                                             engine: try InterpretedUpdateEngine(base: base), knn: knn)
            let name = method.rawValue
            XCTAssertEqual(outcome.method, method, name)
            XCTAssertEqual(outcome.method, golden.method, name)
            XCTAssertEqual(outcome.turns.map(\.knn), golden.turns.map(\.knn), "\(name): each turn's k-NN errors and check")
            XCTAssertEqual(outcome.knn, golden.knn, name)
            XCTAssertEqual(outcome.epochs, golden.epochs, name)
            XCTAssertEqual(outcome.bestEpoch, golden.bestEpoch, name)
            XCTAssertEqual(outcome.acceptance, golden.acceptance, name)
            XCTAssertEqual(outcome.holdoutErrors, golden.holdoutErrors, name)
            XCTAssertLessThanOrEqual(maxDifference(outcome.holdoutLosses, golden.holdoutLosses), 1e-12, name)
            let personal: InterpretedModel = outcome.personal ?? base
            XCTAssertEqual(personal.isKNN, method == .knn, name)
            let got = try personal.predict(golden.inputs).probabilities.flatMap { $0 }
            XCTAssertLessThanOrEqual(maxDifference(got, try XCTUnwrap(golden.probabilitiesAfter).flatMap { $0 }), 1e-9, name)
        }
    }
}
