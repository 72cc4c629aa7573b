import Foundation

/// A source of uniformly random 64-bit words. The DP noise must come from a cryptographically
/// secure one: `KeyedStream` (per window, from the device's key) or the system's secure random.
public protocol RandomSource {
    mutating func next() -> UInt64
}

extension RandomSource {
    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    /// Uniform in (0, 1): never 0, so logarithms stay finite.
    public mutating func openUnit() -> Double { (Double(next() >> 11) + 0.5) * 0x1p-53 }
    /// Uniform integer in 0..<n without modulo bias.
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        let bound = UInt64(n), limit = UInt64.max - UInt64.max % bound
        while true {
            let x = next()
            if x < limit { return Int(x % bound) }
        }
    }
    /// Laplace(0, b) by inversion.
    public mutating func laplace(scale b: Double) -> Double {
        let u = openUnit() - 0.5
        return u < 0 ? b * Foundation.log(1 + 2 * u) : -b * Foundation.log(1 - 2 * u)
    }
    /// Normal(0, sigma) by Box-Muller.
    public mutating func gaussian(sigma: Double) -> Double {
        sigma * (-2 * Foundation.log(openUnit())).squareRoot() * Foundation.cos(2 * Double.pi * unit())
    }
}

/// The dp form's device transform (`privatize` in `tandem/privacy/policy.py`): features clipped to
/// the policy's bounds and noised (Laplace or Gaussian, calibrated to epsilon_features), labels by
/// k-ary randomized response, then clipped again and min <= max per series (post-processing).
public struct DPTransform {
    public let policy: SharingPolicy
    public let featureNames: [String]
    public let classes: [String]
    public let lower: [Double]
    public let upper: [Double]
    /// Noise scale per feature (Laplace b or Gaussian sigma), in featureNames order.
    public let scales: [Double]
    public let keepProbability: Double
    let seriesPairs: [(Int, Int)]  // (index of <s>_min, index of <s>_max)

    public init(policy: SharingPolicy, featureNames: [String], classes: [String]) throws {
        guard policy.has("dp"), let bounds = policy.clipBounds else { throw ClientError.policy("policy \(policy.name) has no dp form") }
        guard Set(bounds.keys) == Set(featureNames) else {
            throw ClientError.policy("policy \(policy.name): clip bounds name other features than the feature spec (another task or version?)")
        }
        guard classes.count >= 2 else { throw ClientError.policy("the dp form randomizes class labels: the task needs at least 2 classes") }
        self.policy = policy
        self.featureNames = featureNames
        self.classes = classes
        lower = featureNames.map { bounds[$0]![0] }
        upper = featureNames.map { bounds[$0]![1] }
        scales = Self.noiseScales(policy: policy, lower: lower, upper: upper)
        keepProbability = Self.keepProbability(epsilon: policy.epsilonLabels, classes: classes.count)
        let index = Dictionary(uniqueKeysWithValues: featureNames.enumerated().map { ($1, $0) })
        seriesPairs = featureNames.compactMap { name in
            guard name.hasSuffix("_min"), let lo = index[name], let hi = index[String(name.dropLast(4)) + "_max"] else { return nil }
            return (lo, hi)
        }
    }

    /// Python's `noise_scales`: Laplace d*w/eps (the vector eps-DP in L1); Gaussian sqrt(d)*w/sqrt(2 rho)
    /// with rho the largest zCDP that implies (eps, delta)-DP. Same operation order as numpy's.
    public static func noiseScales(policy: SharingPolicy, lower: [Double], upper: [Double]) -> [Double] {
        let widths = zip(lower, upper).map { $1 - $0 }
        let d = Double(widths.count), eps = policy.epsilonFeatures
        if policy.noise == "laplace" { return widths.map { $0 * d / eps } }
        let log = Foundation.log(1 / policy.delta)
        let rho = Foundation.pow(((eps + log).squareRoot() - log.squareRoot()), 2)
        return widths.map { $0 * d.squareRoot() / (2 * rho).squareRoot() }
    }

    public static func keepProbability(epsilon: Double, classes: Int) -> Double {
        Foundation.exp(epsilon) / (Foundation.exp(epsilon) + Double(classes) - 1)
    }

    public func clip(_ x: [Double]) -> [Double] {
        x.indices.map { Swift.min(Swift.max(x[$0], lower[$0]), upper[$0]) }
    }

    /// One window's shared form. `random` must be cryptographically secure.
    public func privatize<R: RandomSource>(features: [Double], label: String, random: inout R) throws -> ([Double], String) {
        guard features.count == featureNames.count else {
            throw ClientError.policy("a window has \(features.count) features, the spec \(featureNames.count)")
        }
        guard features.allSatisfy(\.isFinite) else { throw ClientError.policy("a window has a non-finite feature: not shared") }
        var x = clip(features)
        for j in x.indices {
            x[j] += policy.noise == "laplace" ? random.laplace(scale: scales[j]) : random.gaussian(sigma: scales[j])
        }
        var y = label
        if random.unit() >= keepProbability {
            let others = classes.filter { $0 != label }
            y = others[random.below(others.count)]
        }
        x = clip(x)
        for (lo, hi) in seriesPairs {
            let a = x[lo], b = x[hi]
            x[lo] = Swift.min(a, b)
            x[hi] = Swift.max(a, b)
        }
        return (x, y)
    }
}
