import XCTest
@testable import TandemClient

final class PolicyTests: XCTestCase {
    let fx = PolicyFixtures.shared

    func testGeneralizationMatchesPython() throws {
        XCTAssertGreaterThan(fx.generalization.count, 50)
        for c in fx.generalization {
            XCTAssertEqual(try Generalization.generalize(c.column, c.value, level: c.level), c.expected, "\(c.column) \(c.value) level \(c.level)")
        }
        XCTAssertThrowsError(try Generalization.generalize("serial", "x", level: 1))
    }

    func testNoiseScalesAndKeepProbabilityEqualPythonsExactly() throws {
        for p in fx.policies {
            let dp = try DPTransform(policy: p.policy(), featureNames: fx.feature_names, classes: fx.classes)
            XCTAssertEqual(dp.scales, p.scales)  // bit for bit
            XCTAssertEqual(dp.keepProbability, p.keep_probability)
        }
    }

    func testClippingEqualsPythons() throws {
        let dp = try DPTransform(policy: fx.policies[0].policy(), featureNames: fx.feature_names, classes: fx.classes)
        for (x, expected) in zip(fx.clip.input, fx.clip.expected) { XCTAssertEqual(dp.clip(x), expected) }
    }

    func testPolicyRefusesWhatItCannotApply() throws {
        let good = try JSONEncoder().encode(fx.policies[0].public)
        var object = try JSONSerialization.jsonObject(with: good) as! [String: Any]
        object["clip_bounds"] = nil
        XCTAssertThrowsError(try SharingPolicy.load(json: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("no clip_bounds"))
        }
        object = try JSONSerialization.jsonObject(with: good) as! [String: Any]
        object["mechanism"] = ["window_events": []]
        XCTAssertThrowsError(try SharingPolicy.load(json: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("window_events"))
        }
        object = try JSONSerialization.jsonObject(with: good) as! [String: Any]
        object["forms"] = ["dp", "secret"]
        XCTAssertThrowsError(try SharingPolicy.load(json: JSONSerialization.data(withJSONObject: object)))
        XCTAssertThrowsError(try SharingPolicy.load(json: Data("{".utf8)))
        let policy = try SharingPolicy.load(json: good)
        XCTAssertThrowsError(try DPTransform(policy: policy, featureNames: Array(fx.feature_names.dropLast()), classes: fx.classes))
    }

    /// The deterministic post-processing: outputs inside the bounds, min <= max for every series, a
    /// label from the classes, a non-finite feature refused.
    func testPrivatizedWindowKeepsItsInvariants() throws {
        let dp = try DPTransform(policy: fx.policies[0].policy(), featureNames: fx.feature_names, classes: fx.classes)
        var random = SystemRandomSource()
        let index = Dictionary(uniqueKeysWithValues: fx.feature_names.enumerated().map { ($1, $0) })
        for x in fx.clip.input {
            let (out, label) = try dp.privatize(features: x, label: fx.classes[0], random: &random)
            for j in out.indices { XCTAssertTrue(dp.lower[j] <= out[j] && out[j] <= dp.upper[j]) }
            for name in fx.feature_names where name.hasSuffix("_min") {
                if let hi = index[String(name.dropLast(4)) + "_max"] { XCTAssertLessThanOrEqual(out[index[name]!], out[hi]) }
            }
            XCTAssertTrue(fx.classes.contains(label))
        }
        var bad = fx.clip.input[0]
        bad[3] = .nan
        XCTAssertThrowsError(try dp.privatize(features: bad, label: fx.classes[0], random: &random))
    }

    /// The same window under the same key and policy gets the same noise (re-sharing releases nothing
    /// new); another window or key gets other noise.
    func testKeyedStreamIsDeterministicPerWindowAndKey() {
        var a = KeyedStream(key: Data(repeating: 1, count: 32), fingerprint: "f", windowId: "w1")
        var b = KeyedStream(key: Data(repeating: 1, count: 32), fingerprint: "f", windowId: "w1")
        var c = KeyedStream(key: Data(repeating: 1, count: 32), fingerprint: "f", windowId: "w2")
        var d = KeyedStream(key: Data(repeating: 2, count: 32), fingerprint: "f", windowId: "w1")
        let xa = (0..<10).map { _ in a.next() }
        XCTAssertEqual(xa, (0..<10).map { _ in b.next() })
        XCTAssertNotEqual(xa, (0..<10).map { _ in c.next() })
        XCTAssertNotEqual(xa, (0..<10).map { _ in d.next() })
    }
}
