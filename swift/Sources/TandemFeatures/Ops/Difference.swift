/// difference v1: inputs are k minuends then k subtrahends; output i = inputs[i] - inputs[k+i].
struct DifferenceOp: FeatureOp {
    static let name = "difference"
    static let version = 1
    static let kind = "series"
    let triples: [(a: Int, b: Int, dst: Int)]

    init(step: SpecStep, context: inout CompileContext) throws {
        let k = step.outputs.count
        guard k > 0, step.inputs.count == 2 * k else { throw step.error("needs 2k inputs for k outputs") }
        var triples: [(Int, Int, Int)] = []
        for i in 0..<k {
            let a = try context.input(step.inputs[i], of: step), b = try context.input(step.inputs[k + i], of: step)
            guard context.length(a) == context.length(b) else { throw step.error("subtracts series of different lengths") }
            triples.append((a, b, try context.addSeries(step.outputs[i], length: context.length(a), by: step)))
        }
        self.triples = triples
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        for (a, b, dst) in triples {
            let x = series[a], y = series[b]
            series[dst] = (0..<x.count).map { x[$0] - y[$0] }
        }
    }
}
