import XCTest
@testable import TandemModel

/// The k-NN personal model (classifier_knn.mlmodel: classifier.mlmodel's layers before its head, then
/// an empty updatable k-NN with 3 neighbours) against tandem/device/knn.py.
final class KNNModelTests: XCTestCase {
    struct KNNRows: Decodable {
        let update_inputs: [[Double]]
        let update_labels: [String]
        let rows: [[Double]]
        let embeddings: [[Double]]
        let labels: [String]
        let probabilities: [[Double]]
        let empty_labels: [String]
        let class_labels: [String]
    }

    private func pipeline() throws -> InterpretedModel {
        try InterpretedModel(contentsOf: try fixtureURL("classifier_knn.mlmodel"))
    }

    private func maxDifference(_ a: [[Double]], _ b: [[Double]]) -> Double {
        XCTAssertEqual(a.map(\.count), b.map(\.count))
        return zip(a.joined(), b.joined()).map { abs($0 - $1) }.max() ?? .nan
    }

    func testTheKNNPipelineIsDecoded() throws {
        let spec = try ModelSpec(contentsOf: try fixtureURL("classifier_knn.mlmodel"))
        let labelsJSON = #"["sit", "stand", "walk"]"#
        XCTAssertTrue(spec.isUpdatable)
        XCTAssertEqual(spec.description.userDefined["tandem.class_labels"], labelsJSON)
        XCTAssertEqual(spec.description.userDefined["tandem.personal"], "knn")
        XCTAssertEqual(spec.description.trainingInputs.map(\.name), ["features", "label"])
        guard case .pipelineClassifier(let stages)? = spec.type, stages.count == 2 else {
            return XCTFail("not a two-stage pipeline classifier: \(String(describing: spec.type))")
        }
        guard case .neuralNetwork(let nn)? = stages[0].type else { return XCTFail("stage 0 is not a network") }
        XCTAssertEqual(nn.layers.map(\.name), ["standardize", "body.0", "body.0.relu"])
        XCTAssertEqual(nn.layers.last?.outputs, ["embedding"])
        XCTAssertEqual(stages[0].description.outputs, [FeatureDescription(name: "embedding", shape: [16])])
        guard case .kNearestNeighborsClassifier(let knn)? = stages[1].type else { return XCTFail("stage 1 is not a k-NN") }
        XCTAssertEqual(knn, NearestNeighbors(dimensions: 16, samples: [], labels: .strings([]), defaultLabel: "sit", neighbors: 3,
                                             squaredEuclidean: true, inverseDistanceWeighting: false))
        XCTAssertEqual(stages[1].description.userDefined["tandem.class_labels"], labelsJSON)
        let model = try pipeline()
        XCTAssertEqual(model.kind, .classifier)
        XCTAssertTrue(model.isKNN)
        XCTAssertFalse(try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel")).isKNN)
        XCTAssertEqual(model.classLabels, ["sit", "stand", "walk"])
        XCTAssertEqual(model.inputDimension, 8)
    }

    func testTheUpdateAndThePredictionsMatchThePythonRuntime() throws {
        let expected = try fixtureJSON("classifier_knn_rows.json", as: KNNRows.self)
        let engine = try InterpretedKNNEngine(base: try pipeline())
        let embeddings = try engine.embeddings(expected.rows)
        XCTAssertLessThanOrEqual(maxDifference(embeddings, expected.embeddings), 1e-9)
        let updated = try engine.update(LabelledRows(rows: expected.update_inputs, targets: .classes(expected.update_labels)))
        // Each row's embedding, rounded to float32, and its label, appended in the given order.
        guard case .kNearestNeighborsClassifier(let knn)? = SpecInterpreter.knnStage(updated.spec)?.type else { return XCTFail("no k-NN") }
        XCTAssertEqual(knn.samples, try engine.embeddings(expected.update_inputs).map { $0.map { Double(Float($0)) } })
        XCTAssertEqual(knn.labels, .strings(expected.update_labels))
        let predicted = try updated.predict(expected.rows)
        XCTAssertEqual(predicted.classLabels, expected.class_labels)
        XCTAssertEqual(predicted.labels, expected.labels)
        XCTAssertGreaterThan(Set(expected.labels).count, 1, "the fixture's rows are not all one class")
        XCTAssertLessThanOrEqual(maxDifference(predicted.probabilities, expected.probabilities), 1e-9)
        XCTAssertEqual(try engine.base.predict(expected.rows).labels, expected.empty_labels, "the update returned a new model")
    }

    func testTheEmptyPipelinePredictsItsDefaultLabel() throws {
        let expected = try fixtureJSON("classifier_knn_rows.json", as: KNNRows.self)
        let predicted = try pipeline().predict(expected.rows)
        XCTAssertEqual(predicted.labels, expected.empty_labels)
        XCTAssertEqual(predicted.probabilities, Array(repeating: [1, 0, 0], count: expected.rows.count), "probability 1 on \"sit\"")
    }

    func testTheNeighbourRule() throws {
        let classes = ["a", "b", "c"]
        var knn = NearestNeighbors(dimensions: 1, neighbors: 3, squaredEuclidean: true)
        // Squared distances from 0: 4, 1, 1, 9, 4. The nearest three: -1 (stored before 1), 1, then 2
        // (stored before -2); one vote each, a three-way tie: the nearest voter's class.
        knn.samples = [[2], [-1], [1], [3], [-2]]
        knn.labels = .strings(["b", "a", "c", "a", "b"])
        var (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[0]])
        XCTAssertEqual(labels, ["a"])
        XCTAssertEqual(p, [[1.0 / 3, 1.0 / 3, 1.0 / 3]])
        knn.samples = [[2], [1], [-1], [3], [-2]]  // the equal distances the other way round: c is first
        knn.labels = .strings(["b", "c", "a", "a", "b"])
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[0]])
        XCTAssertEqual(labels, ["c"])
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[2.4]])
        XCTAssertEqual(labels, ["b"], "2.4: the nearest are 2 (b), 3 (a), 1 (c): a tie, b nearest")
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[2.9]])
        XCTAssertEqual(labels, ["a"], "2.9: 3 (a), 2 (b), 1 (c)")
        // More votes beat nearness.
        knn.samples = [[2], [1], [-1], [3], [2.5]]
        knn.labels = .strings(["b", "c", "a", "a", "a"])
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[2.2]])
        XCTAssertEqual(labels, ["a"], "2.2: 2 (b) is nearest, but 2.5 and 3 are two votes for a")
        XCTAssertEqual(p, [[1.0 / 3 + 1.0 / 3, 1.0 / 3, 0]])
        // k beyond the stored count: every sample votes; k 0 reads as 1.
        knn.neighbors = 10
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[2.2]])
        XCTAssertEqual(labels, ["a"])
        XCTAssertEqual(p[0].map { ($0 * 5).rounded() }, [3, 1, 1])
        knn.neighbors = 0
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[2.2]])
        XCTAssertEqual(labels, ["b"])
        XCTAssertEqual(p, [[0, 1, 0]])
        // An embedding that is not finite: NaN probabilities, which predict refuses as a non-finite output.
        (labels, p) = try NeighbourVote.run(knn, classLabels: classes, [[.infinity]])
        XCTAssertTrue(p[0].allSatisfy(\.isNaN))
        // Without the metadata's list: the stored labels and the default label, sorted.
        guard case .pipelineClassifier(let stages)? = try pipeline().spec.type else { return XCTFail("not a pipeline") }
        var stage = stages[1]
        stage.description.userDefined = [:]
        stage.type = .kNearestNeighborsClassifier(NearestNeighbors(labels: .strings(["walk", "sit", "walk"]), defaultLabel: "run"))
        XCTAssertEqual(NeighbourVote.classLabels(stage), ["run", "sit", "walk"])
        stage.description.userDefined["tandem.class_labels"] = #"["walk", "sit", "run"]"#
        XCTAssertEqual(NeighbourVote.classLabels(stage), ["walk", "sit", "run"])
    }

    func testWhatTheKNNRefuses() throws {
        let expected = try fixtureJSON("classifier_knn_rows.json", as: KNNRows.self)
        let knn = NearestNeighbors(dimensions: 2, samples: [[0, 0]], labels: .strings(["a"]), defaultLabel: "a", neighbors: 1,
                                   squaredEuclidean: true)
        func refusal(_ change: (inout NearestNeighbors) -> Void, _ rows: [[Double]] = [[1, 1]]) -> String {
            var k = knn
            change(&k)
            do {
                _ = try NeighbourVote.run(k, classLabels: ["a"], rows)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(refusal { _ in }, "no error")
        XCTAssertEqual(refusal { $0.inverseDistanceWeighting = true }, "k-NN: inverse-distance weighting is not supported by the device runtime")
        XCTAssertEqual(refusal { $0.labels = .ints([1]) }, "k-NN: int64 class labels are not supported by the device runtime")
        XCTAssertEqual(refusal { $0.squaredEuclidean = false }, "k-NN: only the squared Euclidean distance is supported")
        XCTAssertEqual(refusal({ _ in }, [[1, 1, 1]]), "k-NN: expects 2-dimensional inputs, got 3")
        XCTAssertEqual(refusal { $0.labels = .strings(["z"]) }, "k-NN: label 'z' is not among the class labels [\"a\"]")

        let engine = try InterpretedKNNEngine(base: try pipeline())
        let rows = Array(expected.update_inputs.prefix(2))
        XCTAssertThrowsError(try engine.update(LabelledRows(rows: rows, targets: .classes(["sit", "run"])))) {
            XCTAssertEqual($0 as? UpdateEngineError, .unknownLabels(["run"], classes: ["sit", "stand", "walk"]))
            XCTAssertEqual("\($0)", "labels run are not among the model's classes sit, stand, walk")
        }
        XCTAssertThrowsError(try engine.update(LabelledRows(rows: rows, targets: .values([1, 2])))) {
            XCTAssertEqual($0 as? UpdateEngineError, .notUpdatable("a k-NN stores class labels"))
        }
        var bad = rows
        bad[1][0] = .nan
        XCTAssertThrowsError(try engine.update(LabelledRows(rows: bad, targets: .classes(["sit", "walk"])))) {
            XCTAssertEqual($0 as? FeatureInputError, .notFinite(count: 1, total: 2, rows: [1]))
        }
        XCTAssertThrowsError(try InterpretedKNNEngine(base: try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel")))) {
            XCTAssertEqual($0 as? UpdateEngineError,
                           .notUpdatable("not a k-NN personal model (a pipeline classifier ending in a k-NN classifier)"))
        }
        // The k-NN stage alone is not a model the app runs (its input is an embedding).
        guard case .pipelineClassifier(let stages)? = try pipeline().spec.type else { return XCTFail("not a pipeline") }
        XCTAssertThrowsError(try InterpretedModel(spec: stages[1])) {
            XCTAssertEqual($0 as? ModelRuntimeError, .unsupportedModel("kNearestNeighborsClassifier"))
        }
    }
}
