// The forward pass of a Core ML NeuralNetwork spec in Double, layer by layer in spec order: the
// Swift twin of tandem/device/runtime.py (same layer types, same classifier/regressor outputs,
// pipelines with Scaler stages, standardization in a batchnorm layer, the k-NN personal model's
// k-nearest-neighbours stage). Core ML itself is the implementation on Apple platforms; this one
// runs everywhere and is what Linux tests check.
import Foundation

public enum ModelRuntimeError: Error, CustomStringConvertible, Equatable {
    case unsupportedLayer(name: String, type: String, detail: String)
    case unsupportedModel(String)
    case missingBlob(layer: String, blob: String)
    case wrongWidth(layer: String, expected: Int, got: Int)
    case noClassLabels
    case missingOutput(String)
    case unsupportedKNN(String)

    public var description: String {
        switch self {
        case .unsupportedLayer(let name, let type, let detail): return "layer '\(name)' of type '\(type)': \(detail)"
        case .unsupportedModel(let kind): return "model type '\(kind)' is not supported by the device runtime"
        case .missingBlob(let layer, let blob): return "layer '\(layer)': input blob '\(blob)' is not produced before it"
        case .wrongWidth(let layer, let expected, let got): return "layer '\(layer)': expects \(expected) inputs, got \(got)"
        case .noClassLabels: return "classifier has no class labels"
        case .missingOutput(let name): return "no model stage produces the output '\(name)'"
        case .unsupportedKNN(let detail): return "k-NN: \(detail)"
        }
    }
}

typealias Batch = [[Double]]  // rows of one blob: (n, width)

enum LayerForward {
    static func run(_ layer: Layer, _ x: Batch) throws -> Batch {
        guard layer.inputs.count == 1, layer.outputs.count == 1 else {
            throw ModelRuntimeError.unsupportedLayer(name: layer.name, type: layer.kind.typeName,
                                                     detail: "only single-input, single-output layers are supported")
        }
        switch layer.kind {
        case .innerProduct(let inputs, let outputs, let weights, let bias, let int8):
            if int8 {
                throw ModelRuntimeError.unsupportedLayer(name: layer.name, type: "innerProduct",
                                                         detail: "int8 dynamic quantization is not supported")
            }
            return try innerProduct(layer.name, x, inputs: inputs, outputs: outputs, w: weights.values, b: bias?.values)
        case .activation(let a):
            return try x.map { try $0.map { try activate(a, $0, layer: layer.name) } }
        case .softmax:
            return x.map(softmax)
        case .batchnorm(_, let eps, let gamma, let beta, let mean, let variance, let meanVar, let instance):
            if meanVar || instance {
                throw ModelRuntimeError.unsupportedLayer(name: layer.name, type: "batchnorm",
                                                         detail: "computeMeanVar/instanceNormalization not supported")
            }
            // Inference batchnorm as y = x * s + t, statistics frozen in the spec (as runtime.py).
            let s = zip(gamma.values, variance.values).map { $0 / ($1 + eps).squareRoot() }
            let t = (0..<s.count).map { beta.values[$0] - mean.values[$0] * s[$0] }
            return x.map { row in broadcast(row, s) { $0 * $1 } }.map { row in broadcast(row, t) { $0 + $1 } }
        case .scale(let scale, let bias):
            let y = x.map { row in broadcast(row, scale.values) { $0 * $1 } }
            guard let bias = bias else { return y }
            return y.map { row in broadcast(row, bias.values) { $0 + $1 } }
        case .bias(let bias):
            return x.map { row in broadcast(row, bias.values) { $0 + $1 } }
        case .flatten:
            return x  // rows are already flat
        case .other:
            throw ModelRuntimeError.unsupportedLayer(name: layer.name, type: layer.kind.typeName,
                                                     detail: "not supported by the device runtime")
        }
    }

    /// y = x W^T + b with W stored (outputs, inputs) row-major, as Core ML stores it.
    static func innerProduct(_ name: String, _ x: Batch, inputs: Int, outputs: Int, w: [Double], b: [Double]?) throws -> Batch {
        guard w.count == inputs * outputs else {
            throw ModelRuntimeError.unsupportedLayer(name: name, type: "innerProduct",
                                                     detail: "holds \(w.count) weights for \(outputs)x\(inputs)")
        }
        return try x.map { row in
            guard row.count == inputs else { throw ModelRuntimeError.wrongWidth(layer: name, expected: inputs, got: row.count) }
            return (0..<outputs).map { o in
                var sum = 0.0
                let base = o * inputs
                for i in 0..<inputs { sum += row[i] * w[base + i] }
                return b.map { sum + $0[o] } ?? sum
            }
        }
    }

    static func activate(_ a: Activation, _ v: Double, layer: String) throws -> Double {
        switch a {
        case .relu: return max(v, 0)
        case .sigmoid: return 1 / (1 + exp(-v))
        case .tanh: return Foundation.tanh(v)
        case .linear(let alpha, let beta): return alpha * v + beta
        case .leakyReLU(let alpha): return v > 0 ? v : alpha * v
        case .other(let field):
            throw ModelRuntimeError.unsupportedLayer(name: layer, type: "activation field \(field)",
                                                     detail: "not supported by the device runtime")
        }
    }

    /// Shifted by the maximum for overflow safety; softmax is shift-invariant.
    static func softmax(_ row: [Double]) -> [Double] {
        let top = row.max() ?? 0
        let e = row.map { exp($0 - top) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// Per-channel parameters ([C]) or one shared value ([1]) applied along a row.
    static func broadcast(_ row: [Double], _ p: [Double], _ op: (Double, Double) -> Double) -> [Double] {
        if p.count == 1 { return row.map { op($0, p[0]) } }
        return zip(row, p).map(op)
    }
}

/// Runs a decoded spec: pipelines stage by stage, networks layer by layer.
public struct SpecInterpreter {
    public let spec: ModelSpec

    public init(_ spec: ModelSpec) { self.spec = spec }

    /// Every blob and output the model produces from `features` (input name -> rows).
    func run(_ model: ModelSpec, _ features: [String: Batch]) throws -> [String: Batch] {
        var out = features
        switch model.type {
        case .pipeline(let stages), .pipelineClassifier(let stages), .pipelineRegressor(let stages):
            for stage in stages { out.merge(try run(stage, out)) { $1 } }
            return out
        case .scaler(let shift, let scale):
            guard let src = model.description.inputs.first?.name, let dst = model.description.outputs.first?.name,
                  let x = out[src] else { throw ModelRuntimeError.missingOutput("scaler input") }
            out[dst] = x.map { row in
                row.enumerated().map { i, v in
                    (v + (shift.isEmpty ? 0 : shift[shift.count == 1 ? 0 : i])) * (scale.isEmpty ? 1 : scale[scale.count == 1 ? 0 : i])
                }
            }
            return out
        case .neuralNetwork(let nn), .neuralNetworkRegressor(let nn):
            let blobs = try network(nn, out)
            for o in model.description.outputs where blobs[o.name] != nil && out[o.name] == nil { out[o.name] = blobs[o.name] }
            return out
        case .neuralNetworkClassifier(let nn):
            let blobs = try network(nn, out)
            let probabilities = blobs[Self.probabilityBlob(nn)] ?? []
            out[model.description.predictedProbabilitiesName.isEmpty ? "classProbability" : model.description.predictedProbabilitiesName] = probabilities
            for o in model.description.outputs where blobs[o.name] != nil && out[o.name] == nil { out[o.name] = blobs[o.name] }
            return out
        case .kNearestNeighborsClassifier(let knn):
            guard let src = model.description.inputs.first?.name, let x = out[src] else { throw ModelRuntimeError.missingOutput("k-NN input") }
            let classes = NeighbourVote.classLabels(model)
            let (labels, probabilities) = try NeighbourVote.run(knn, classLabels: classes, x)
            let description = model.description
            out[description.predictedProbabilitiesName.isEmpty ? "classProbability" : description.predictedProbabilitiesName] = probabilities
            // Blobs hold numbers: the label travels as its index in the class labels (-1: no label).
            out[description.predictedFeatureName.isEmpty ? "classLabel" : description.predictedFeatureName] =
                labels.map { [Double(classes.firstIndex(of: $0) ?? -1)] }
            return out
        case .other, nil:
            throw ModelRuntimeError.unsupportedModel(model.type?.name ?? "none")
        }
    }

    func network(_ nn: NeuralNetwork, _ inputs: [String: Batch]) throws -> [String: Batch] {
        var blobs = inputs
        for layer in nn.layers {
            guard let input = layer.inputs.first, let x = blobs[input] else {
                throw ModelRuntimeError.missingBlob(layer: layer.name, blob: layer.inputs.first ?? "")
            }
            let y = try LayerForward.run(layer, x)
            blobs[layer.outputs[0]] = y
        }
        return blobs
    }

    /// labelProbabilityLayerName (a layer's name or output), else the last layer's output.
    static func probabilityBlob(_ nn: NeuralNetwork) -> String {
        let name = nn.labelProbabilityLayerName
        if !name.isEmpty, let layer = nn.layers.first(where: { $0.name == name || $0.outputs.first == name }) {
            return layer.outputs[0]
        }
        return nn.layers.last?.outputs.first ?? ""
    }

    /// The k-NN stage of a k-NN personal model: the last stage of a pipeline, when it is one.
    static func knnStage(_ model: ModelSpec) -> ModelSpec? {
        switch model.type {
        case .pipeline(let stages), .pipelineClassifier(let stages), .pipelineRegressor(let stages):
            guard let last = stages.last, case .kNearestNeighborsClassifier? = last.type else { return nil }
            return last
        default: return nil
        }
    }

    /// The classifier network inside a spec: itself, or the last classifier stage of a pipeline.
    static func classifierNetwork(_ model: ModelSpec) -> NeuralNetwork? {
        switch model.type {
        case .neuralNetworkClassifier(let nn): return nn
        case .pipeline(let stages), .pipelineClassifier(let stages), .pipelineRegressor(let stages):
            return stages.reversed().lazy.compactMap(classifierNetwork).first
        default: return nil
        }
    }
}

/// The k-NN personal model's prediction rule (tandem/device/knn.py's `knn_forward`, Tandem's rule in
/// both languages): the squared Euclidean distance from each embedding to every stored sample; the
/// k = min(numberOfNeighbors, stored) nearest, equal distances in storage order; one vote each. The
/// probabilities are the vote shares over the class labels; the label is the most voted class, a tie
/// going to the class whose voter is nearest. An empty index predicts its default label.
enum NeighbourVote {
    static let classLabelsKey = "tandem.class_labels"  // JSON list: the released classes, the probabilities' order

    /// The stage's class labels: its metadata's "tandem.class_labels", else the stored labels and the
    /// default label, sorted by code point (as Python sorts them). [] when the metadata is not a list of strings.
    static func classLabels(_ stage: ModelSpec) -> [String] {
        if let given = stage.description.userDefined[classLabelsKey], !given.isEmpty {
            return (try? JSONDecoder().decode([String].self, from: Data(given.utf8))) ?? []
        }
        guard case .kNearestNeighborsClassifier(let knn)? = stage.type else { return [] }
        return UpdatePolicyRunner.sortedClasses(knn.labels.asStrings + [knn.defaultLabel])
    }

    /// (labels, probabilities in `classLabels` order) for rows of embeddings. A row whose embedding is
    /// not finite gets NaN probabilities and no label: the caller refuses it as a non-finite output.
    static func run(_ knn: NearestNeighbors, classLabels: [String], _ x: Batch) throws -> ([String], Batch) {
        guard knn.squaredEuclidean else { throw ModelRuntimeError.unsupportedKNN("only the squared Euclidean distance is supported") }
        guard !knn.inverseDistanceWeighting else {
            throw ModelRuntimeError.unsupportedKNN("inverse-distance weighting is not supported by the device runtime")
        }
        let stored: [String]
        switch knn.labels {
        case .none: stored = []
        case .strings(let s): stored = s
        case .ints: throw ModelRuntimeError.unsupportedKNN("int64 class labels are not supported by the device runtime")
        }
        guard stored.count == knn.samples.count, knn.samples.allSatisfy({ $0.count == knn.dimensions }) else {
            throw ModelRuntimeError.unsupportedKNN("the index holds \(knn.samples.count) samples for \(stored.count) labels "
                                                   + "(each of \(knn.dimensions) dimensions)")
        }
        let column = Dictionary(classLabels.enumerated().map { ($1, $0) }) { first, _ in first }
        func columnOf(_ label: String) throws -> Int {
            guard let c = column[label] else { throw ModelRuntimeError.unsupportedKNN("label '\(label)' is not among the class labels \(classLabels)") }
            return c
        }
        let n = min(max(knn.neighbors, 1), knn.samples.count)  // k 0 reads as 1, as knn.py's `or 1`
        let defaultColumn = n == 0 ? try columnOf(knn.defaultLabel) : 0
        var labels: [String] = [], probabilities: Batch = []
        for row in x {
            guard row.count == knn.dimensions else {
                throw ModelRuntimeError.unsupportedKNN("expects \(knn.dimensions)-dimensional inputs, got \(row.count)")
            }
            var p = [Double](repeating: 0, count: classLabels.count)
            guard row.allSatisfy(\.isFinite) else {
                labels.append("")
                probabilities.append(p.map { _ in .nan })
                continue
            }
            guard n > 0 else {
                p[defaultColumn] = 1
                labels.append(knn.defaultLabel)
                probabilities.append(p)
                continue
            }
            let distances = knn.samples.map { s in zip(row, s).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }
            // A stable order: equal distances keep the earlier stored sample first (numpy's stable argsort).
            let nearest = distances.indices.sorted { distances[$0] < distances[$1] || (distances[$0] == distances[$1] && $0 < $1) }.prefix(n)
            let voters = nearest.map { stored[$0] }
            var votes: [String: Int] = [:]
            for v in voters {
                p[try columnOf(v)] += 1 / Double(n)  // summed vote by vote, as knn.py does
                votes[v, default: 0] += 1
            }
            let top = votes.values.max() ?? 0
            labels.append(voters.first { votes[$0] == top } ?? knn.defaultLabel)  // a tie: the nearest voter's class
            probabilities.append(p)
        }
        return (labels, probabilities)
    }
}
