import XCTest
@testable import TandemModel

/// The fixtures were written by Fixtures/make_fixtures.py from the Python device runtime.
func fixtureURL(_ name: String) throws -> URL {
    try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil), "missing fixture \(name)")
}

func fixtureJSON<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: try fixtureURL(name)))
}

final class InterpretedModelTests: XCTestCase {
    struct ClassifierRows: Decodable {
        let rows: [[Double]]
        let probabilities: [[Double]]
        let labels: [String]
        let class_labels: [String]
    }

    struct RegressorRows: Decodable {
        let rows: [[Double]]
        let values: [[Double]]
    }

    func testTheReleaseShapedSpecIsDecoded() throws {
        let spec = try ModelSpec(contentsOf: try fixtureURL("classifier.mlmodel"))
        XCTAssertGreaterThanOrEqual(spec.specificationVersion, 4)
        XCTAssertTrue(spec.isUpdatable)
        XCTAssertEqual(spec.description.inputs.first?.name, "features")
        XCTAssertEqual(spec.description.inputs.first?.shape, [8])
        guard case .neuralNetworkClassifier(let nn)? = spec.type else { return XCTFail("not a classifier: \(String(describing: spec.type))") }
        XCTAssertEqual(nn.layers.map(\.kind.typeName), ["batchnorm", "innerProduct", "activation", "innerProduct", "softmax"])
        XCTAssertEqual(nn.layers.filter(\.isUpdatable).map(\.name), ["body.0", "head"])
        XCTAssertEqual(nn.classLabels, .strings(["sit", "stand", "walk"]))
    }

    func testClassifierMatchesThePythonRuntime() throws {
        let expected = try fixtureJSON("classifier_rows.json", as: ClassifierRows.self)
        let model = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        XCTAssertEqual(model.kind, .classifier)
        XCTAssertEqual(model.classLabels, expected.class_labels)
        let got = try model.predict(expected.rows)
        XCTAssertEqual(got.labels, expected.labels)
        let worst = zip(got.probabilities, expected.probabilities).flatMap { zip($0, $1).map { abs($0 - $1) } }.max() ?? .nan
        XCTAssertLessThanOrEqual(worst, 1e-12, "max |swift - python| = \(worst)")
    }

    func testRegressorMatchesThePythonRuntime() throws {
        let expected = try fixtureJSON("regressor_rows.json", as: RegressorRows.self)
        let model = try InterpretedModel(contentsOf: try fixtureURL("regressor.mlmodel"))
        XCTAssertEqual(model.kind, .regressor)
        XCTAssertEqual(model.classLabels, [])
        let got = try model.predict(expected.rows)
        XCTAssertEqual(got.values.count, expected.values.count)
        let worst = zip(got.values, expected.values).flatMap { zip($0, $1).map { abs($0 - $1) } }.max() ?? .nan
        XCTAssertLessThanOrEqual(worst, 1e-12, "max |swift - python| = \(worst)")
    }

    func testNonFiniteRowsAreRefusedWithACount() throws {
        let expected = try fixtureJSON("classifier_rows.json", as: ClassifierRows.self)
        let model = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        var rows = expected.rows
        rows[2][0] = .nan
        rows[5][3] = .infinity
        rows[7][1] = -.infinity
        XCTAssertThrowsError(try model.predict(rows)) { error in
            XCTAssertEqual(error as? FeatureInputError, .notFinite(count: 3, total: rows.count, rows: [2, 5, 7]))
            XCTAssertTrue("\(error)".hasPrefix("3 of 12 feature vectors hold NaN or infinite values"), "\(error)")
        }
        XCTAssertThrowsError(try model.predict([Array(repeating: 1, count: 7)])) { error in
            XCTAssertEqual(error as? FeatureInputError, .wrongWidth(expected: 8, got: 7, row: 0))
        }
        XCTAssertEqual(try model.predict([]).labels, [])  // empty input: nothing to do, no error
        var huge = expected.rows
        huge[4] = Array(repeating: 1e308, count: 8)  // finite, but the network overflows on it
        XCTAssertThrowsError(try model.predict(huge)) { error in
            XCTAssertEqual(error as? FeatureInputError, .outputNotFinite(count: 1, total: 12, rows: [4]))
        }
    }

    func testFeatureFilesCountNonNumericAndNonFiniteRows() throws {
        let json = "[[1, 2.5], [NaN, 1], [Infinity, 0], [\"3\", 1], [null, 1], [true, 0], [-Infinity, 0], [0, -0.5]]"
        let parsed = try FeatureRows.parse(json: Data(json.utf8))
        XCTAssertEqual(parsed.nonNumeric, [3, 4, 5])
        XCTAssertEqual(parsed.nonFinite, [1, 2, 6])
        XCTAssertEqual(parsed.valid, [0, 7])
        XCTAssertEqual(parsed.rows[7], [0, -0.5])
        XCTAssertThrowsError(try FeatureRows.parse(json: Data("{\"rows\": 1}".utf8)))
    }
}
