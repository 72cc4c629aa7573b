/// magnitude v1: per sample sqrt(x*x + y*y + z*z) of three inputs.
struct MagnitudeOp: FeatureOp {
    static let name = "magnitude"
    static let version = 1
    static let kind = "series"
    let x, y, z, dst: Int

    init(step: SpecStep, context: inout CompileContext) throws {
        guard step.inputs.count == 3, step.outputs.count == 1 else { throw step.error("needs 3 inputs and 1 output") }
        let i = try context.inputs(of: step)
        guard Set(i.map { context.length($0) }).count == 1 else { throw step.error("reads series of different lengths") }
        (x, y, z) = (i[0], i[1], i[2])
        dst = try context.addSeries(step.outputs[0], length: context.length(x), by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        let a = series[x], b = series[y], c = series[z]
        var out = [Double](repeating: 0, count: a.count)
        for t in 0..<a.count {
            let sum: Double = a[t] * a[t] + b[t] * b[t] + c[t] * c[t]
            out[t] = sum.squareRoot()
        }
        series[dst] = out
    }
}
