/// stats v1: mean, std (population), min, max, mad_diff of each input, statistics in the listed order.
struct StatsOp: FeatureOp {
    static let name = "stats"
    static let version = 1
    static let kind = "features"
    enum Statistic: String, CaseIterable { case mean, std, min, max, madDiff = "mad_diff" }
    let inputs: [Int]
    let statistics: [Statistic]

    init(step: SpecStep, context: inout CompileContext) throws {
        statistics = try step.statistics(Statistic.self)
        inputs = try context.inputs(of: step)
        if statistics.contains(.madDiff), let s = inputs.first(where: { context.length($0) < 2 }) {
            throw step.error("mad_diff needs 2 samples, series \(step.inputs[inputs.firstIndex(of: s)!]) has 1")
        }
        try context.addFeatures(step.inputs.flatMap { s in statistics.map { "\(s)_\($0.rawValue)" } }, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for s in inputs {
            let x = series[s]
            let n = Double(x.count)
            for stat in statistics {
                switch stat {
                case .mean: features.append(mean(x))
                case .std:
                    let m = mean(x)
                    features.append((pairwiseSum(x.map { ($0 - m) * ($0 - m) }) / n).squareRoot())
                case .min: features.append(x.min()!)
                case .max: features.append(x.max()!)
                case .madDiff:
                    features.append(pairwiseSum((0..<(x.count - 1)).map { Swift.abs(x[$0 + 1] - x[$0]) }) / Double(x.count - 1))
                }
            }
        }
    }
}
