import Foundation
import XCTest
@testable import TandemFeatures

/// The Swift featurizer against Python's features (tests/feature_cases.py wrote the fixtures:
/// every built-in task and every `tandem init` template, typical and edge-case windows).
final class FeaturizerParityTests: XCTestCase {
    static let tolerance = 1e-9
    static let expectedTasks: Set<String> = ["har", "grunfeld", "sensor-classification", "tabular-classification", "tabular-regression"]

    struct Fixture {
        let task: String
        let spec: [String: Any]
        let cases: [String]
        let windows: [[[Double]]]
        let features: [[Double]]
        let modelInputs: [[Double]]
    }

    static func fixtures() throws -> [Fixture] {
        let folder = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
        return try files.map { url in
            let record = try XCTUnwrap(try AnyJSON.parse(Data(contentsOf: url)) as? [String: Any])
            func matrix(_ value: Any?) throws -> [[Double]] {
                try XCTUnwrap(value as? [Any]).map { row in try XCTUnwrap(row as? [Any]).map { try XCTUnwrap(jsonDouble($0)) } }
            }
            return Fixture(task: try XCTUnwrap(record["task"] as? String), spec: try XCTUnwrap(record["spec"] as? [String: Any]),
                           cases: try XCTUnwrap(record["cases"] as? [String]),
                           windows: try XCTUnwrap(record["windows"] as? [Any]).map { try matrix($0) },
                           features: try matrix(record["features"]), modelInputs: try matrix(record["model_inputs"]))
        }
    }

    /// Max |Swift - Python| over every window and feature, and where it is.
    func maxDifference(_ featurizer: Featurizer, _ fixture: Fixture, modelInput: Bool = false) throws -> (Double, String) {
        var worst = (0.0, "-")
        let expected = modelInput ? fixture.modelInputs : fixture.features
        for (i, window) in fixture.windows.enumerated() {
            let got = modelInput ? try featurizer.modelInput(window: window) : try featurizer.features(window: window)
            XCTAssertEqual(got.count, expected[i].count, "\(fixture.task) \(fixture.cases[i])")
            for (j, (a, b)) in zip(got, expected[i]).enumerated() where abs(a - b) > worst.0 || a.isNaN {
                worst = (a.isNaN ? .infinity : abs(a - b), "\(fixture.cases[i]) \(featurizer.featureNames[j]) swift \(a) python \(b)")
            }
        }
        return worst
    }

    func testEveryTaskAndTemplateMatchesPython() throws {
        let fixtures = try Self.fixtures()
        XCTAssertEqual(Set(fixtures.map(\.task)), Self.expectedTasks)
        var overall = 0.0
        for fixture in fixtures {
            let featurizer = try Featurizer(spec: fixture.spec)
            XCTAssertEqual(featurizer.featureNames, fixture.spec["feature_names"] as? [String])
            let (features, whereF) = try maxDifference(featurizer, fixture)
            let (inputs, _) = try maxDifference(featurizer, fixture, modelInput: true)
            print("featurizer parity \(fixture.task): \(fixture.windows.count) windows x \(featurizer.featureNames.count) features, "
                  + "max |swift - python| features \(features), model inputs \(inputs) (at \(whereF))")
            XCTAssertLessThanOrEqual(features, Self.tolerance, "\(fixture.task): \(whereF)")
            XCTAssertLessThanOrEqual(inputs, Self.tolerance, fixture.task)
            overall = max(overall, features, inputs)
        }
        print("featurizer parity: max |swift - python| over every task \(overall)")
    }

    /// A spec without the lowpass coefficients: they are derived by the same formula as Python's.
    func testLowpassCoefficientsDerivedWhenTheSpecLacksThem() throws {
        let har = try XCTUnwrap(Self.fixtures().first { $0.task == "har" })
        var spec = har.spec
        var steps = try XCTUnwrap(spec["steps"] as? [[String: Any]])
        XCTAssertEqual(steps[0]["op"] as? String, "lowpass")
        XCTAssertNotNil(steps[0].removeValue(forKey: "coefficients"))
        spec["steps"] = steps
        let (difference, at) = try maxDifference(try Featurizer(spec: spec), har)
        XCTAssertLessThanOrEqual(difference, Self.tolerance, at)
    }

    func testJSONNumbersAreReadExactly() throws {
        let text = "[-11.354716217749194, -13.31807228281183, 0.1, 5e-324, 1.7976931348623157e308, 3]"
        let values = try XCTUnwrap(AnyJSON.parse(Data(text.utf8)) as? [Any]).map { try XCTUnwrap(jsonDouble($0)) }
        let expected = [-11.354716217749194, -13.31807228281183, 0.1, 5e-324, 1.7976931348623157e308, 3.0]
        XCTAssertEqual(values.map(\.bitPattern), expected.map(\.bitPattern))
    }
}

/// Real recordings: HAPT user 01's first windows of each activity and the features the server's golden
/// path computed (copies of tests/fixtures/feature_spec.json and feature_golden.json).
final class HAPTGoldenTests: XCTestCase {
    func testRealHAPTWindowsMatchTheGoldenFeatures() throws {
        let folder = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("hapt")
        let featurizer = try Featurizer(specURL: folder.appendingPathComponent("feature_spec.json"))
        let golden = try XCTUnwrap(AnyJSON.parse(Data(contentsOf: folder.appendingPathComponent("feature_golden.json"))) as? [String: Any])
        let windows = try XCTUnwrap(golden["windows"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(windows.count, 6)
        var worst = 0.0
        for window in windows {
            let raw = try XCTUnwrap(window["raw"] as? [Any]).map { try XCTUnwrap($0 as? [Any]).map { try XCTUnwrap(jsonDouble($0)) } }
            let expected = try XCTUnwrap(window["features"] as? [Any]).map { try XCTUnwrap(jsonDouble($0)) }
            let got = try featurizer.features(window: raw)
            XCTAssertEqual(got.count, expected.count)
            worst = max(worst, zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity)
        }
        print("featurizer parity HAPT golden windows: \(windows.count) windows, max |swift - python| \(worst)")
        XCTAssertLessThanOrEqual(worst, FeaturizerParityTests.tolerance)
    }
}
