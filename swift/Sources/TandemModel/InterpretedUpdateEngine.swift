// An on-device update computed by TandemKit itself: the Swift twin of tandem/device/update.py
// (cross-entropy on a softmax or MSE, SGD with momentum or Adam, backpropagation through the
// layers Tandem emits, only the layers flagged updatable, weights stored back as float32 as Core ML
// stores them). Shuffling is not offered: Core ML's shuffling RNG is not reproducible, so the
// policy runs unshuffled. On Apple platforms an app uses CoreMLUpdateEngine; this engine lets Linux
// compute what the golden trace records instead of only replaying it.
import Foundation

public enum UpdateEngineError: Error, CustomStringConvertible, Equatable {
    case notUpdatable(String)
    case shuffleUnsupported
    case unknownLabels([String], classes: [String])

    public var description: String {
        switch self {
        case .notUpdatable(let why): return "cannot update this model: \(why)"
        case .unknownLabels(let labels, let classes):
            return "labels \(labels.joined(separator: ", ")) are not among the model's classes \(classes.joined(separator: ", "))"
        case .shuffleUnsupported: return "shuffled updates are not reproducible here: run the update with shuffle off"
        }
    }
}

public final class InterpretedUpdateEngine: UpdateEngine {
    public typealias Personal = InterpretedModel
    public let base: InterpretedModel
    let network: NeuralNetwork
    let stages: [ModelSpec]  // pipeline stages before the network (not updatable)
    let networkInput: String
    let lossInput: String
    let crossEntropy: Bool
    let softmaxIndex: Int?  // the softmax the cross-entropy reads (its backprop is folded into the loss)
    let trainable: [String: (weights: Bool, bias: Bool)]
    let first: Int  // the first updatable layer: backpropagation stops there

    public init(base: InterpretedModel) throws {
        self.base = base
        let (netModel, stages) = try Self.trainableNetwork(base.spec)
        guard case .some(let nn) = Self.network(of: netModel) else { throw UpdateEngineError.notUpdatable("no neural network") }
        network = nn
        self.stages = stages
        networkInput = netModel.description.inputs.first?.name ?? ""
        guard nn.updateParams.losses.count == 1 else {
            throw UpdateEngineError.notUpdatable("expected exactly one loss layer, found \(nn.updateParams.losses.count)")
        }
        switch nn.updateParams.losses[0] {
        case .crossEntropy(let input): lossInput = input; crossEntropy = true
        case .meanSquaredError(let input): lossInput = input; crossEntropy = false
        case .none: throw UpdateEngineError.notUpdatable("no loss layer")
        }
        var trainable: [String: (weights: Bool, bias: Bool)] = [:]
        for layer in nn.layers where layer.isUpdatable {
            guard case .innerProduct(_, _, let w, let b, _) = layer.kind else {
                throw UpdateEngineError.notUpdatable("layer '\(layer.name)' (\(layer.kind.typeName)) cannot be updated")
            }
            trainable[layer.name] = (w.isUpdatable, b?.isUpdatable ?? false)
        }
        guard let first = nn.layers.firstIndex(where: { trainable[$0.name] != nil }) else {
            throw UpdateEngineError.notUpdatable("no updatable layer in the network")
        }
        self.trainable = trainable
        self.first = first
        if crossEntropy {
            let lossBlob = lossInput
            guard let i = nn.layers.firstIndex(where: { $0.outputs.first == lossBlob }), nn.layers[i].kind == .softmax else {
                throw UpdateEngineError.notUpdatable("cross-entropy must read a softmax layer's output")
            }
            softmaxIndex = i
        } else {
            softmaxIndex = nil
        }
    }

    static func network(of model: ModelSpec) -> NeuralNetwork? {
        switch model.type {
        case .neuralNetwork(let nn), .neuralNetworkClassifier(let nn), .neuralNetworkRegressor(let nn): return nn
        default: return nil
        }
    }

    /// (the network model, the stages before it): in a pipeline only the last model trains.
    static func trainableNetwork(_ spec: ModelSpec) throws -> (ModelSpec, [ModelSpec]) {
        switch spec.type {
        case .pipeline(let stages), .pipelineClassifier(let stages), .pipelineRegressor(let stages):
            guard let last = stages.last, network(of: last) != nil else { throw UpdateEngineError.notUpdatable("the pipeline's last model is not a network") }
            return (last, Array(stages.dropLast()))
        default:
            guard network(of: spec) != nil else { throw UpdateEngineError.notUpdatable("no neural network") }
            return (spec, [])
        }
    }

    // ---- the pieces of one step --------------------------------------------------------------

    typealias Params = [String: (w: [Double], b: [Double]?)]

    func initialParams() -> Params {
        var params: Params = [:]
        for layer in network.layers {
            if case .innerProduct(_, _, let w, let b, _) = layer.kind { params[layer.name] = (w.values, b?.values) }
        }
        return params
    }

    func networkRows(_ rows: [[Double]]) throws -> Batch {
        var features: [String: Batch] = [base.inputName: rows]
        let interpreter = SpecInterpreter(base.spec)
        for stage in stages { features.merge(try interpreter.run(stage, features)) { $1 } }
        guard let x = features[networkInput] else { throw ModelRuntimeError.missingOutput(networkInput) }
        return x
    }

    func forward(_ x: Batch, _ params: Params) throws -> [String: Batch] {
        var blobs: [String: Batch] = [networkInput: x]
        for layer in network.layers {
            guard let input = layer.inputs.first, let x = blobs[input] else {
                throw ModelRuntimeError.missingBlob(layer: layer.name, blob: layer.inputs.first ?? "")
            }
            if case .innerProduct(let nIn, let nOut, _, _, _) = layer.kind, let p = params[layer.name] {
                blobs[layer.outputs[0]] = try LayerForward.innerProduct(layer.name, x, inputs: nIn, outputs: nOut, w: p.w, b: p.b)
            } else {
                blobs[layer.outputs[0]] = try LayerForward.run(layer, x)
            }
        }
        return blobs
    }

    enum Target { case classes([Int]), values(Batch) }

    func targets(_ t: Targets) throws -> Target {
        switch t {
        case .classes(let labels):
            let order = network.classLabels.asStrings
            return .classes(try labels.map { label in
                guard let k = order.firstIndex(of: label) else {
                    throw ModelRuntimeError.missingOutput("class '\(label)' (the model's classes: \(order))")
                }
                return k
            })
        case .values(let v): return .values(v.map { [$0] })
        }
    }

    func loss(_ p: Batch, _ t: Target) -> Double {
        switch t {
        case .classes(let k): return -zip(p, k).map { log(max($0[$1], 1e-300)) }.reduce(0, +) / Double(k.count)
        case .values(let y):
            let sq = zip(p, y).flatMap { zip($0, $1).map { ($0 - $1) * ($0 - $1) } }
            return sq.reduce(0, +) / Double(sq.count)
        }
    }

    func gradients(_ blobs: [String: Batch], _ t: Target, _ params: Params) throws -> [String: (w: [Double], b: [Double])] {
        let p = blobs[lossInput] ?? []
        let n = Double(p.count)
        var grads: [String: Batch] = [:]
        switch t {
        case .classes(let k):  // softmax + cross-entropy in one step: (p - onehot) / n
            grads[network.layers[softmaxIndex!].inputs[0]] = p.enumerated().map { r, row in
                row.enumerated().map { j, v in (v - (j == k[r] ? 1 : 0)) / n }
            }
        case .values(let y):
            let size = Double(p.count * (p.first?.count ?? 1))
            grads[lossInput] = zip(p, y).map { zip($0, $1).map { 2 * ($0 - $1) / size } }
        }
        var out: [String: (w: [Double], b: [Double])] = [:]
        for i in stride(from: network.layers.count - 1, through: first, by: -1) {
            let layer = network.layers[i]
            guard i != softmaxIndex, let g = grads[layer.outputs[0]], let x = blobs[layer.inputs[0]] else { continue }
            let w = params[layer.name]?.w
            if trainable[layer.name] != nil, case .innerProduct(let nIn, let nOut, _, _, _) = layer.kind {
                var gw = [Double](repeating: 0, count: nIn * nOut), gb = [Double](repeating: 0, count: nOut)
                for (gr, xr) in zip(g, x) {
                    for o in 0..<nOut {
                        gb[o] += gr[o]
                        for j in 0..<nIn { gw[o * nIn + j] += gr[o] * xr[j] }
                    }
                }
                out[layer.name] = (gw, gb)
            }
            if i > first {
                let dx = try backward(layer, x, blobs[layer.outputs[0]]!, g, w)
                if let prior = grads[layer.inputs[0]] {
                    grads[layer.inputs[0]] = zip(prior, dx).map { zip($0, $1).map(+) }
                } else {
                    grads[layer.inputs[0]] = dx
                }
            }
        }
        return out
    }

    /// dL/dx of one layer from dL/dy (update.py's `_backward`).
    func backward(_ layer: Layer, _ x: Batch, _ y: Batch, _ g: Batch, _ w: [Double]?) throws -> Batch {
        func each(_ f: (Double, Double, Double) -> Double) -> Batch {
            zip(zip(x, y), g).map { xy, gr in (0..<gr.count).map { f(xy.0[$0], xy.1[$0], gr[$0]) } }
        }
        switch layer.kind {
        case .innerProduct(let nIn, let nOut, _, _, _):
            let w = w ?? []
            return g.map { gr in (0..<nIn).map { j in (0..<nOut).reduce(0.0) { $0 + gr[$1] * w[$1 * nIn + j] } } }
        case .activation(let a):
            switch a {
            case .relu: return each { x, _, g in g * (x > 0 ? 1 : 0) }
            case .sigmoid: return each { _, y, g in g * y * (1 - y) }
            case .tanh: return each { _, y, g in g * (1 - y * y) }
            case .linear(let alpha, _): return each { _, _, g in g * alpha }
            case .leakyReLU(let alpha): return each { x, _, g in g * (x > 0 ? 1 : alpha) }
            case .other: break
            }
        case .batchnorm(_, let eps, let gamma, _, _, let variance, _, _):  // frozen statistics: an affine map
            let s = zip(gamma.values, variance.values).map { $0 / ($1 + eps).squareRoot() }
            return g.map { LayerForward.broadcast($0, s, *) }
        case .flatten, .bias: return g
        case .scale(let scale, _): return g.map { LayerForward.broadcast($0, scale.values, *) }
        case .softmax:
            return zip(y, g).map { yr, gr in
                let dot = zip(gr, yr).map(*).reduce(0, +)
                return zip(yr, gr).map { $0 * ($1 - dot) }
            }
        case .other: break
        }
        throw ModelRuntimeError.unsupportedLayer(name: layer.name, type: layer.kind.typeName, detail: "no backpropagation")
    }

    /// SGD with momentum or Adam, as update.py's `_Optimizer`: the state per (layer, weights|bias).
    final class Optimizer {
        let settings: UpdateSettings
        let kind: UpdateParametersSpec.Optimizer
        var t = 0
        var state: [String: ([Double], [Double])] = [:]

        init(_ kind: UpdateParametersSpec.Optimizer, _ settings: UpdateSettings) {
            self.kind = kind
            self.settings = settings
        }

        func step(_ value: inout [Double], _ g: [Double], key: String) {
            let lr = settings.learningRate
            switch kind {
            case .sgd(_, _, let momentum):
                let previous = state[key]?.0 ?? [Double](repeating: 0, count: g.count)
                let v = zip(previous, g).map { $0 * momentum + $1 }
                state[key] = (v, [])
                for i in value.indices { value[i] = value[i] - lr * v[i] }
            case .adam(_, _, let b1, let b2, let eps):
                let zero = [Double](repeating: 0, count: g.count)
                let (m0, s0) = state[key] ?? (zero, zero)
                let m = zip(m0, g).map { b1 * $0 + (1 - b1) * $1 }
                let s = zip(s0, g).map { b2 * $0 + (1 - b2) * $1 * $1 }
                state[key] = (m, s)
                let c1 = 1 - pow(b1, Double(t)), c2 = 1 - pow(b2, Double(t))
                for i in value.indices { value[i] = value[i] - lr * (m[i] / c1) / ((s[i] / c2).squareRoot() + eps) }
            case .none: break
            }
        }
    }

    static let float32Max = Double(Float.greatestFiniteMagnitude)

    func finite(_ params: Params) -> Bool {
        trainable.keys.allSatisfy { name in
            let p = params[name]!
            return (p.w + (p.b ?? [])).allSatisfy { $0.isFinite && abs($0) <= Self.float32Max }
        }
    }

    // ---- the engine --------------------------------------------------------------------------

    public func baseCheck(heldOut: LabelledRows) throws -> HeldOutCheck {
        try HeldOutLoss.check(base, heldOut)
    }

    public func baseOverflowRows(_ rows: [[Double]]) throws -> [Int] {
        try base.overflowRows(rows)
    }

    public func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                       onEpochEnd: @escaping (Int, HeldOutCheck) -> Bool) throws -> InterpretedModel? {
        guard !settings.shuffle else { throw UpdateEngineError.shuffleUnsupported }
        try FeatureRows.requireFinite(training.rows, dimension: base.inputDimension)
        guard training.count > 0 else { return base }  // nothing to learn from: the base, unchanged
        let x = try networkRows(training.rows), t = try targets(training.targets)
        let held = try heldOut.map { (try networkRows($0.rows), $0.targets) }
        var params = initialParams()
        let optimizer = Optimizer(network.updateParams.optimizer, settings)
        let batch = max(settings.miniBatchSize, 1)
        for epoch in 1...max(epochs, 1) {
            var total = 0.0
            for start in stride(from: 0, to: x.count, by: batch) {
                let rows = Array(start..<min(start + batch, x.count))
                let xb = rows.map { x[$0] }
                let tb: Target
                switch t {
                case .classes(let k): tb = .classes(rows.map { k[$0] })
                case .values(let v): tb = .values(rows.map { v[$0] })
                }
                let blobs = try forward(xb, params)
                let stepLoss = loss(blobs[lossInput] ?? [], tb)
                let grads = try gradients(blobs, tb, params)
                optimizer.t += 1
                for (name, g) in grads {
                    let on = trainable[name]!
                    if on.weights { optimizer.step(&params[name]!.w, g.w, key: name + ".weights") }
                    if on.bias, params[name]!.b != nil { optimizer.step(&params[name]!.b!, g.b, key: name + ".bias") }
                }
                guard stepLoss.isFinite, finite(params) else { throw UpdateDiverged(epoch: epoch) }  // after every step
                total += stepLoss * Double(rows.count)
            }
            let reported: HeldOutCheck
            if let (hx, ht) = held {
                let out = try forward(hx, params)[lossInput] ?? []
                switch ht {
                case .classes(let labels):  // the softmax's probabilities, in the network's class order
                    reported = HeldOutCheck(loss: loss(out, try targets(ht)),
                                            errors: HeldOutLoss.classErrors(out, classLabels: network.classLabels.asStrings, labels: labels))
                case .values(let v):
                    let values = out.map { $0.first ?? .nan }
                    reported = HeldOutCheck(loss: zip(values, v).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(v.count),
                                            errors: HeldOutLoss.valueErrors(values, targets: v))
                }
            } else {
                reported = HeldOutCheck(loss: total / Double(x.count), errors: [])
            }
            if onEpochEnd(epoch, reported) { break }
        }
        return try InterpretedModel(spec: personalSpec(params))
    }

    /// The base spec with the updated layers' weights rounded to float32, as Core ML writes them.
    func personalSpec(_ params: Params) -> ModelSpec {
        var nn = network
        for i in nn.layers.indices {
            guard let on = trainable[nn.layers[i].name], let p = params[nn.layers[i].name],
                  case .innerProduct(let nIn, let nOut, var w, var b, let int8) = nn.layers[i].kind else { continue }
            if on.weights { w.values = p.w.map { Double(Float($0)) } }
            if on.bias, let pb = p.b { b?.values = pb.map { Double(Float($0)) } }
            nn.layers[i].kind = .innerProduct(inputs: nIn, outputs: nOut, weights: w, bias: b, int8Dynamic: int8)
        }
        return Self.replacingNetwork(base.spec, nn)
    }

    static func replacingNetwork(_ spec: ModelSpec, _ nn: NeuralNetwork) -> ModelSpec {
        var out = spec
        switch spec.type {
        case .neuralNetwork: out.type = .neuralNetwork(nn)
        case .neuralNetworkClassifier: out.type = .neuralNetworkClassifier(nn)
        case .neuralNetworkRegressor: out.type = .neuralNetworkRegressor(nn)
        case .pipeline(let s): out.type = .pipeline(s.dropLast() + [replacingNetwork(s.last!, nn)])
        case .pipelineClassifier(let s): out.type = .pipelineClassifier(s.dropLast() + [replacingNetwork(s.last!, nn)])
        case .pipelineRegressor(let s): out.type = .pipelineRegressor(s.dropLast() + [replacingNetwork(s.last!, nn)])
        default: break
        }
        return out
    }
}
