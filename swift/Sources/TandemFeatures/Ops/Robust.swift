import Foundation

/// robust v1: iqr, mad (unscaled, from the median), skewness and excess kurtosis (population moments;
/// 0 when the variance is below 1e-20) of each input. Quantiles as numpy's default (linear).
struct RobustOp: FeatureOp {
    static let name = "robust"
    static let version = 1
    static let kind = "features"
    enum Statistic: String, CaseIterable { case iqr, mad, skewness, kurtosis }
    static let tinyVariance = 1e-20
    let inputs: [Int]
    let statistics: [Statistic]

    init(step: SpecStep, context: inout CompileContext) throws {
        statistics = try step.statistics(Statistic.self)
        inputs = try context.inputs(of: step)
        try context.addFeatures(step.inputs.flatMap { s in statistics.map { "\(s)_\($0.rawValue)" } }, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for s in inputs {
            let x = series[s]
            var sorted: [Double] = []
            var moments: (m2: Double, d: [Double])?
            for stat in statistics {
                switch stat {
                case .iqr, .mad:
                    if sorted.isEmpty { sorted = x.sorted() }
                    if stat == .iqr {
                        features.append(sortedQuantile(sorted, 0.75) - sortedQuantile(sorted, 0.25))
                    } else {
                        let median = sortedQuantile(sorted, 0.5)
                        features.append(sortedQuantile(x.map { Swift.abs($0 - median) }.sorted(), 0.5))
                    }
                case .skewness, .kurtosis:
                    if moments == nil {
                        let d = centered(x)
                        moments = (pairwiseSum(d.map { $0 * $0 }) / Double(d.count), d)
                    }
                    let (m2, d) = moments!
                    guard m2 >= RobustOp.tinyVariance else { features.append(0.0); continue }
                    let n = Double(d.count)
                    if stat == .skewness {
                        features.append((pairwiseSum(d.map { pow($0, 3.0) }) / n) / pow(m2, 1.5))
                    } else {
                        features.append((pairwiseSum(d.map { pow($0, 4.0) }) / n) / (m2 * m2) - 3.0)
                    }
                }
            }
        }
    }
}
