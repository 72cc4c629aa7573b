/// value v1: a series' last sample as a feature (a tabular row's only value).
struct ValueOp: FeatureOp {
    static let name = "value"
    static let version = 1
    static let kind = "features"
    let inputs: [Int]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard !step.inputs.isEmpty else { throw step.error("needs at least one input") }
        inputs = try context.inputs(of: step)
        try context.addFeatures(step.inputs, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for s in inputs { features.append(series[s][series[s].count - 1]) }
    }
}
