import Foundation

/// angle v1: acos(clamp(m_a / |m|, -1, 1)) of the three inputs' means m; pi/2 when |m| = 0.
struct AngleOp: FeatureOp {
    static let name = "angle"
    static let version = 1
    static let kind = "features"
    let inputs: [Int]

    init(step: SpecStep, context: inout CompileContext) throws {
        guard step.inputs.count == 3 else { throw step.error("needs 3 inputs (x, y, z)") }
        let name = try step.param("name", as: String.self)
        inputs = try context.inputs(of: step)
        try context.addFeatures(["x", "y", "z"].map { "\(name)_angle_\($0)" }, by: step)
    }

    func apply(_ series: inout [[Double]], _ features: inout [Double]) {
        let m = inputs.map { mean(series[$0]) }
        var squares = 0.0  // numpy sums 3 values in order from 0
        for v in m { squares += v * v }
        let norm = squares.squareRoot()
        for v in m {
            let c = norm > 0 ? v / norm : 0.0
            features.append(acos(Swift.min(Swift.max(c, -1.0), 1.0)))
        }
    }
}
