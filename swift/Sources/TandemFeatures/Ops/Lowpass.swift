import Foundation

/// lowpass v1: a 2nd-order Butterworth low-pass (direct form II transposed), started at rest on the
/// window's mean. The coefficients are read from the spec entry (what Python computed); only a spec
/// without them has them derived here, by the same bilinear-transform formula.
struct LowpassOp: FeatureOp {
    static let name = "lowpass"
    static let version = 1
    static let kind = "series"
    let b0, b1, b2, a1, a2: Double
    let pairs: [(src: Int, dst: Int)]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard step.inputs.count == step.outputs.count, !step.inputs.isEmpty else {
            throw step.error("needs as many outputs as inputs")
        }
        if let c = step.entry["coefficients"] as? [String: Any] {
            func coefficient(_ key: String) throws -> Double {
                guard let v = jsonDouble(c[key]), v.isFinite else { throw step.error("coefficients.\(key) is missing") }
                return v
            }
            (b0, b1, b2, a1, a2) = (try coefficient("b0"), try coefficient("b1"), try coefficient("b2"),
                                    try coefficient("a1"), try coefficient("a2"))
        } else {
            guard let cutoff = jsonDouble(step.params["cutoff_hz"]) else { throw step.error("params.cutoff_hz is not a number") }
            guard cutoff > 0, cutoff < context.sampleRateHz / 2 else {
                throw step.error("cutoff_hz \(cutoff) must lie in (0, sample_rate_hz / 2)")
            }
            let k = tan(Double.pi * cutoff / context.sampleRateHz)
            let norm = 1.0 / (1.0 + 2.0.squareRoot() * k + k * k)
            b0 = k * k * norm; b1 = 2.0 * b0; b2 = b0
            a1 = 2.0 * (k * k - 1.0) * norm; a2 = (1.0 - 2.0.squareRoot() * k + k * k) * norm
        }
        pairs = try context.addElementwiseSeries(of: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (src, dst) in pairs {
            let x = series[src]
            let start = mean(x)
            var z1 = (1.0 - b0) * start, z2 = (b2 - a2) * start
            var y = [Double](repeating: 0, count: x.count)
            for t in 0..<x.count {
                let xt = x[t]
                let yt = b0 * xt + z1
                z1 = b1 * xt - a1 * yt + z2
                z2 = b2 * xt - a2 * yt
                y[t] = yt
            }
            series[dst] = y
        }
    }
}
