import Foundation

/// spectrum v1: from the one-sided DFT power of the mean-removed series (P[k] = |X[k]|^2 / n^2):
/// the dominant frequency (first largest bin of 1..n/2), the normalized spectral entropy over those
/// bins, and ln(band energy + 1e-6) for each [lo, hi] band of bin indices (inclusive).
struct SpectrumOp: FeatureOp {
    static let name = "spectrum"
    static let version = 1
    static let kind = "features"
    static let energyFloor = 1e-6
    let inputs: [Int]
    let bands: [(lo: Int, hi: Int)]
    let transforms: [PowerSpectrum]
    let rate: Double

    init(step: SpecStep, context: inout CompileContext) throws {
        guard let raw = step.params["bands"] as? [[Int]], raw.allSatisfy({ $0.count == 2 && $0[0] >= 0 && $0[0] <= $0[1] }) else {
            throw step.error("params.bands must be a list of [lo, hi] bin indices with 0 <= lo <= hi")
        }
        inputs = try context.inputs(of: step)
        for (name, s) in zip(step.inputs, inputs) where context.length(s) < 4 {
            throw step.error("series \(name) has \(context.length(s)) samples: a spectrum needs at least 4")
        }
        bands = raw.map { ($0[0], $0[1]) }
        transforms = inputs.map { PowerSpectrum(n: context.length($0)) }
        rate = context.sampleRateHz
        try context.addFeatures(step.inputs.flatMap { s in
            ["\(s)_dominant_hz", "\(s)_entropy"] + (0..<raw.count).map { "\(s)_band\($0)" }
        }, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (s, fft) in zip(inputs, transforms) {
            let n = fft.n
            let full = fft.power(centered(series[s]))
            let P = full[1...]  // bin 0 (the mean) left out
            var best = 1
            for k in P.indices where P[k] > P[best] { best = k }
            features.append(Double(best) * (rate / Double(n)))
            let total = pairwiseSum(P)
            if total > 0 {
                let terms = P.map { v -> Double in
                    let p = v / total
                    return p > 0 ? p * log(p) : 0.0
                }
                features.append(-pairwiseSum(terms) / log(Double(P.count)))
            } else {
                features.append(0.0)
            }
            for (lo, hi) in bands {
                // numpy slicing full[lo:hi+1]: a band past n/2 ends at n/2, as on the server
                let energy = lo < full.count ? pairwiseSum(full[lo...Swift.min(hi, full.count - 1)]) : 0.0
                features.append(log(energy + SpectrumOp.energyFloor))
            }
        }
    }
}
