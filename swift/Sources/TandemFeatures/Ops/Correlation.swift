/// correlation v1: Pearson's r of each pair; 0 when a series is flat.
struct CorrelationOp: FeatureOp {
    static let name = "correlation"
    static let version = 1
    static let kind = "features"
    let pairs: [(a: Int, b: Int)]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard let raw = step.params["pairs"] as? [[String]], !raw.isEmpty, raw.allSatisfy({ $0.count == 2 }) else {
            throw step.error("params.pairs must be a list of [a, b] series names")
        }
        var pairs: [(Int, Int)] = []
        for p in raw {
            let a = try context.input(p[0], of: step), b = try context.input(p[1], of: step)
            guard context.length(a) == context.length(b) else { throw step.error("correlates series of different lengths") }
            pairs.append((a, b))
        }
        self.pairs = pairs
        try context.addFeatures(raw.map { "corr_\($0[0])_\($0[1])" }, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (a, b) in pairs {
            let da = centered(series[a]), db = centered(series[b])
            let n = da.count
            let aa = pairwiseSum((0..<n).map { da[$0] * da[$0] })
            let bb = pairwiseSum((0..<n).map { db[$0] * db[$0] })
            let ab = pairwiseSum((0..<n).map { da[$0] * db[$0] })
            let denom = (aa * bb).squareRoot()
            features.append(denom > 0 ? ab / denom : 0.0)
        }
    }
}
