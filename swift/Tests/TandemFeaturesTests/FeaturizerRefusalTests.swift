import Foundation
import XCTest
@testable import TandemFeatures

/// What the featurizer refuses, with a clear error, rather than guessing.
final class FeaturizerRefusalTests: XCTestCase {
    var har: FeaturizerParityTests.Fixture!

    override func setUpWithError() throws {
        har = try XCTUnwrap(FeaturizerParityTests.fixtures().first { $0.task == "har" })
    }

    /// The HAR spec with step `index` changed by `edit`.
    func spec(step index: Int, _ edit: (inout [String: Any]) -> Void) throws -> [String: Any] {
        var spec = har.spec
        var steps = try XCTUnwrap(spec["steps"] as? [[String: Any]])
        edit(&steps[index])
        spec["steps"] = steps
        return spec
    }

    func assertRefused(_ spec: [String: Any], saying words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Featurizer(spec: spec), file: file, line: line) { error in
            let text = String(describing: error)
            XCTAssertTrue(error is FeatureError, text, file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
            for word in words { XCTAssertTrue(text.contains(word), "\(text) lacks \(word)", file: file, line: line) }
        }
    }

    func testTheUnchangedSpecIsAccepted() throws {
        XCTAssertEqual(try Featurizer(spec: har.spec).featureNames.count, 157)
    }

    func testUnknownOpIsRefused() throws {
        assertRefused(try spec(step: 0) { $0["op"] = "wavelet" }, saying: ["unknown feature op wavelet", "step 0"])
    }

    func testUnknownVersionOfAKnownOpIsRefused() throws {
        assertRefused(try spec(step: 9) { $0["version"] = 2 }, saying: ["spectrum", "version 2 is not implemented"])
    }

    func testAStepWithoutVersionIsRefused() throws {
        assertRefused(try spec(step: 3) { $0.removeValue(forKey: "version") }, saying: ["magnitude", "no integer version"])
    }

    func testUnknownSpecVersionIsRefused() throws {
        var spec = har.spec
        spec["version"] = 4
        assertRefused(spec, saying: ["feature spec version 4 is not supported"])
    }

    func testUnknownStatisticIsRefused() throws {
        assertRefused(try spec(step: 7) { $0["params"] = ["statistics": ["mean", "median"]] }, saying: ["unknown statistic median"])
    }

    func testAStepReadingAnUnknownSeriesIsRefused() throws {
        assertRefused(try spec(step: 3) { $0["inputs"] = ["body_x", "body_y", "body_w"] }, saying: ["unknown series body_w"])
    }

    func testWrongWindowShapesAreRefused() throws {
        let featurizer = try Featurizer(spec: har.spec)
        let window = har.windows[0]
        XCTAssertThrowsError(try featurizer.features(window: Array(window.dropLast()))) {
            XCTAssertTrue(String(describing: $0).contains("128 samples x 6 channels, got 127 samples"), "\($0)")
        }
        var narrow = window
        narrow[5].removeLast()
        XCTAssertThrowsError(try featurizer.features(window: narrow)) {
            XCTAssertTrue(String(describing: $0).contains("sample 5 has 5 values"), "\($0)")
        }
    }

    func testNonFiniteInputsAreRefused() throws {
        let featurizer = try Featurizer(spec: har.spec)
        for bad in [Double.nan, .infinity, -.infinity] {
            var window = har.windows[0]
            window[17][4] = bad
            XCTAssertThrowsError(try featurizer.features(window: window)) {
                XCTAssertTrue(String(describing: $0).contains("sample 17 of channel gyro_y is \(bad)"), "\($0)")
            }
        }
    }

    func testOverflowingFeaturesAreRefused() throws {
        // finite but far outside any channel's bounds: magnitudes overflow to inf, which must not reach the model
        let featurizer = try Featurizer(spec: har.spec)
        let window = [[Double]](repeating: [1e300, -1e300, 1e300, 0, 0, 0], count: 128)
        XCTAssertThrowsError(try featurizer.features(window: window)) {
            XCTAssertTrue(String(describing: $0).contains("outside its channel's range"), "\($0)")
        }
    }
}
