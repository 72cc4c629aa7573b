import XCTest
@testable import TandemClient

/// The noise's distribution, checked statistically on the secure sources (fixed sample sizes; the
/// thresholds are the tests' critical values, so a correct sampler fails about once in 10^4 runs).
final class NoiseDistributionTests: XCTestCase {
    let n = 20_000

    /// Kolmogorov-Smirnov distance of the sample from `cdf`.
    func ksDistance(_ sample: [Double], cdf: (Double) -> Double) -> Double {
        let sorted = sample.sorted(), m = Double(sorted.count)
        var d = 0.0
        for (i, x) in sorted.enumerated() {
            let f = cdf(x)
            d = max(d, abs(f - Double(i) / m), abs(Double(i + 1) / m - f))
        }
        return d
    }

    // KS critical value at alpha = 1e-4 is about 2.15 / sqrt(n)
    var ksCritical: Double { 2.15 / Double(n).squareRoot() }

    func testLaplaceSamplerFollowsLaplace() {
        var random = SystemRandomSource()
        let b = 3.7
        let sample = (0..<n).map { _ in random.laplace(scale: b) }
        let d = ksDistance(sample) { x in x < 0 ? 0.5 * exp(x / b) : 1 - 0.5 * exp(-x / b) }
        XCTAssertLessThan(d, ksCritical)
    }

    func testGaussianSamplerFollowsNormal() {
        var random = KeyedStream(key: Data((0..<32).map { UInt8($0) }), fingerprint: "stat", windowId: "w")
        let sigma = 0.8
        let sample = (0..<n).map { _ in random.gaussian(sigma: sigma) }
        let d = ksDistance(sample) { x in 0.5 * erfc(-x / (sigma * 2.0.squareRoot())) }
        XCTAssertLessThan(d, ksCritical)
    }

    /// Through the whole transform: a feature at its bounds' midpoint comes out clipped to the upper
    /// bound with probability P(noise > w/2) = exp(-w / 2b) / 2; labels are kept with the policy's
    /// keep probability and otherwise spread evenly over the other classes.
    func testTransformMatchesTheMechanismsProbabilities() throws {
        let fx = PolicyFixtures.shared
        let dp = try DPTransform(policy: fx.policies[0].policy(), featureNames: fx.feature_names, classes: fx.classes)
        let mid = zip(dp.lower, dp.upper).map { ($0 + $1) / 2 }
        let j = fx.feature_names.firstIndex { $0.hasSuffix("_mean") }!  // not in a min/max pair
        let pHigh = exp(-(dp.upper[j] - dp.lower[j]) / (2 * dp.scales[j])) / 2
        var random = SystemRandomSource()
        var high = 0, kept = 0
        var others = [String: Int]()
        let windows = 2_000
        for _ in 0..<windows {
            let (x, label) = try dp.privatize(features: mid, label: fx.classes[0], random: &random)
            if x[j] == dp.upper[j] { high += 1 }
            if label == fx.classes[0] { kept += 1 } else { others[label, default: 0] += 1 }
        }
        func within(_ count: Int, _ p: Double, _ trials: Int) -> Bool {  // 4.5 standard deviations
            abs(Double(count) - p * Double(trials)) <= 4.5 * (p * (1 - p) * Double(trials)).squareRoot()
        }
        XCTAssertTrue(within(high, pHigh, windows), "\(high) clipped high, expected \(pHigh * Double(windows))")
        XCTAssertTrue(within(kept, dp.keepProbability, windows), "\(kept) kept, expected \(dp.keepProbability * Double(windows))")
        XCTAssertEqual(Set(others.keys), Set(fx.classes.dropFirst()))
        let flipped = windows - kept
        for (_, count) in others { XCTAssertTrue(within(count, 1.0 / 5.0, flipped)) }
    }
}
