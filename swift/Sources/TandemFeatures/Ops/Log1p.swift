import Foundation

/// log1p v1: per sample log(1 + max(x, 0)).
struct Log1pOp: FeatureOp {
    static let name = "log1p"
    static let version = 1
    static let kind = "series"
    let pairs: [(src: Int, dst: Int)]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard step.inputs.count == step.outputs.count, !step.inputs.isEmpty else { throw step.error("needs as many outputs as inputs") }
        pairs = try context.addElementwiseSeries(of: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (src, dst) in pairs { series[dst] = series[src].map { Foundation.log1p(Swift.max($0, 0.0)) } }
    }
}
