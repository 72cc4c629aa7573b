/// jerk v1: j[t] = (x[t+1] - x[t]) * sample_rate_hz; n-1 samples out (no padding).
struct JerkOp: FeatureOp {
    static let name = "jerk"
    static let version = 1
    static let kind = "series"
    let rate: Double
    let pairs: [(src: Int, dst: Int)]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard step.inputs.count == step.outputs.count, !step.inputs.isEmpty else { throw step.error("needs as many outputs as inputs") }
        rate = context.sampleRateHz
        var pairs: [(Int, Int)] = []
        for (src, dst) in zip(step.inputs, step.outputs) {
            let s = try context.input(src, of: step)
            guard context.length(s) >= 2 else { throw step.error("\(src) has fewer than 2 samples") }
            pairs.append((s, try context.addSeries(dst, length: context.length(s) - 1, by: step)))
        }
        self.pairs = pairs
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (src, dst) in pairs {
            let x = series[src]
            series[dst] = (0..<(x.count - 1)).map { (x[$0 + 1] - x[$0]) * rate }
        }
    }
}
