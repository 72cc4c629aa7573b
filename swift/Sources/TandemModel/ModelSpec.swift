// The parts of Core ML's `Model` message (coremltools mlmodel/format/Model.proto,
// NeuralNetwork.proto, NearestNeighbors.proto) that Tandem's releases use, decoded with
// ProtoReader. Field numbers are Apple's; anything else in the file is skipped, as protobuf
// readers do with unknown fields.
import Foundation

public enum ModelSpecError: Error, CustomStringConvertible, Equatable {
    case notAModel
    case unsupportedWeights(String)

    public var description: String {
        switch self {
        case .notAModel: return "not a Core ML model (no model type in the spec): pass a release's model.mlmodel"
        case .unsupportedWeights(let what): return "\(what): quantized weights are not supported by the device runtime"
        }
    }
}

public struct FeatureDescription: Equatable {
    public var name = ""
    public var shape: [Int] = []  // a multiArray's shape (empty for other feature types)
}

public struct ModelDescription: Equatable {
    public var inputs: [FeatureDescription] = []
    public var outputs: [FeatureDescription] = []
    public var trainingInputs: [FeatureDescription] = []
    public var predictedFeatureName = ""
    public var predictedProbabilitiesName = ""
    public var userDefined: [String: String] = [:]  // metadata.userDefined (e.g. "tandem.class_labels")
}

/// A WeightParams message, already widened to Double (float32 and float16 are exact in Double).
public struct Weights: Equatable {
    public var values: [Double] = []
    public var isUpdatable = false
}

public enum Activation: Equatable {
    case relu, sigmoid, tanh
    case linear(alpha: Double, beta: Double)
    case leakyReLU(alpha: Double)
    case other(field: Int)
}

public enum LayerKind: Equatable {
    case innerProduct(inputs: Int, outputs: Int, weights: Weights, bias: Weights?, int8Dynamic: Bool)
    case activation(Activation)
    case softmax
    case batchnorm(channels: Int, epsilon: Double, gamma: Weights, beta: Weights, mean: Weights, variance: Weights,
                   computeMeanVar: Bool, instanceNormalization: Bool)
    case scale(scale: Weights, bias: Weights?)
    case bias(Weights)
    case flatten
    case other(field: Int)  // a layer type this runtime does not run (named in the error)

    public var typeName: String {
        switch self {
        case .innerProduct: return "innerProduct"
        case .activation: return "activation"
        case .softmax: return "softmax"
        case .batchnorm: return "batchnorm"
        case .scale: return "scale"
        case .bias: return "bias"
        case .flatten: return "flatten"
        case .other(let field): return LayerKind.knownTypes[field] ?? "layer field \(field)"
        }
    }

    static let knownTypes = [100: "convolution", 120: "pooling", 220: "unary", 165: "padding", 170: "concat",
                             180: "lrn", 190: "split", 200: "add", 210: "multiply", 400: "batchedMatMul",
                             1400: "softmaxND"]
}

public struct Layer: Equatable {
    public var name = ""
    public var inputs: [String] = []
    public var outputs: [String] = []
    public var isUpdatable = false
    public var kind: LayerKind = .other(field: 0)
}

public enum ClassLabels: Equatable {
    case none
    case strings([String])
    case ints([Int])

    public var asStrings: [String] {
        switch self {
        case .none: return []
        case .strings(let s): return s
        case .ints(let i): return i.map(String.init)
        }
    }
}

/// NetworkUpdateParameters: the loss, the optimizer's default settings and the default epochs.
public struct UpdateParametersSpec: Equatable {
    public enum Loss: Equatable { case none, crossEntropy(input: String), meanSquaredError(input: String) }
    public enum Optimizer: Equatable {
        case none
        case sgd(learningRate: Double, miniBatchSize: Int, momentum: Double)
        case adam(learningRate: Double, miniBatchSize: Int, beta1: Double, beta2: Double, eps: Double)
    }
    public var losses: [Loss] = []
    public var optimizer: Optimizer = .none
    public var epochs = 0
}

public struct NeuralNetwork: Equatable {
    public var layers: [Layer] = []
    public var classLabels: ClassLabels = .none
    public var labelProbabilityLayerName = ""
    public var updateParams = UpdateParametersSpec()
}

/// KNearestNeighborsClassifier: an index of stored embeddings (float32 in the spec, widened exactly)
/// and one label per sample. What the runtime does not compute (another distance, inverse-distance
/// weighting, int64 labels) is recorded so that the forward pass can refuse it by name.
public struct NearestNeighbors: Equatable {
    public var dimensions = 0
    public var samples: [[Double]] = []
    public var labels: ClassLabels = .none  // stringClassLabels / int64ClassLabels: one per sample
    public var defaultLabel = ""  // defaultStringLabel: what an empty index predicts
    public var neighbors = 0  // numberOfNeighbors.defaultValue: k
    public var squaredEuclidean = false  // the index's distance function is set (its only kind)
    public var inverseDistanceWeighting = false
}

public indirect enum ModelType: Equatable {
    case neuralNetwork(NeuralNetwork)
    case neuralNetworkClassifier(NeuralNetwork)
    case neuralNetworkRegressor(NeuralNetwork)
    case pipeline([ModelSpec])
    case pipelineClassifier([ModelSpec])
    case pipelineRegressor([ModelSpec])
    case scaler(shift: [Double], scale: [Double])
    case kNearestNeighborsClassifier(NearestNeighbors)
    case other(field: Int)

    public var name: String {
        switch self {
        case .neuralNetwork: return "neuralNetwork"
        case .neuralNetworkClassifier: return "neuralNetworkClassifier"
        case .neuralNetworkRegressor: return "neuralNetworkRegressor"
        case .pipeline: return "pipeline"
        case .pipelineClassifier: return "pipelineClassifier"
        case .pipelineRegressor: return "pipelineRegressor"
        case .scaler: return "scaler"
        case .kNearestNeighborsClassifier: return "kNearestNeighborsClassifier"
        case .other(let field): return "model type field \(field)"
        }
    }
}

/// A decoded `.mlmodel`.
public struct ModelSpec: Equatable {
    public var specificationVersion = 0
    public var description = ModelDescription()
    public var isUpdatable = false
    public var type: ModelType?

    public init(bytes: [UInt8]) throws {
        try self.init(message: bytes[...])
        guard type != nil else { throw ModelSpecError.notAModel }
    }

    public init(contentsOf url: URL) throws {
        try self.init(bytes: [UInt8](try Data(contentsOf: url)))
    }

    init(message: ArraySlice<UInt8>) throws {
        try ProtoReader.forEachField(in: message) { field, value in
            switch field {
            case 1: specificationVersion = value.int
            case 2: description = try Self.modelDescription(value.bytes)
            case 10: isUpdatable = value.bool
            case 200, 201, 202: type = try Self.pipeline(field, value.bytes)
            case 303: type = .neuralNetworkRegressor(try Self.network(value.bytes))
            case 403: type = .neuralNetworkClassifier(try Self.network(value.bytes))
            case 404: type = .kNearestNeighborsClassifier(try Self.nearestNeighbors(value.bytes))
            case 500: type = .neuralNetwork(try Self.network(value.bytes))
            case 604: type = try Self.scaler(value.bytes)
            case 300...3000: type = .other(field: field)
            default: break
            }
        }
    }

    // ---- messages ----------------------------------------------------------------------------

    static func modelDescription(_ data: ArraySlice<UInt8>) throws -> ModelDescription {
        var d = ModelDescription()
        try ProtoReader.forEachField(in: data) { field, value in
            switch field {
            case 1: d.inputs.append(try feature(value.bytes))
            case 10: d.outputs.append(try feature(value.bytes))
            case 50: d.trainingInputs.append(try feature(value.bytes))
            case 11: d.predictedFeatureName = value.string
            case 12: d.predictedProbabilitiesName = value.string
            case 100:  // Metadata: userDefined = 100, a map (entries: key = 1, value = 2)
                try ProtoReader.forEachField(in: value.bytes) { mf, mv in
                    guard mf == 100 else { return }
                    var key = "", entry = ""
                    try ProtoReader.forEachField(in: mv.bytes) { ef, ev in
                        if ef == 1 { key = ev.string }
                        if ef == 2 { entry = ev.string }
                    }
                    d.userDefined[key] = entry
                }
            default: break
            }
        }
        return d
    }

    static func feature(_ data: ArraySlice<UInt8>) throws -> FeatureDescription {
        var f = FeatureDescription()
        try ProtoReader.forEachField(in: data) { field, value in
            if field == 1 { f.name = value.string }
            if field == 3 {  // FeatureType: multiArrayType = 5, its shape = 1 (repeated int64)
                try ProtoReader.forEachField(in: value.bytes) { tf, tv in
                    guard tf == 5 else { return }
                    try ProtoReader.forEachField(in: tv.bytes) { af, av in
                        if af == 1 { try Repeated.varints(av, into: &f.shape) }
                    }
                }
            }
        }
        return f
    }

    static func pipeline(_ field: Int, _ data: ArraySlice<UInt8>) throws -> ModelType {
        // PipelineClassifier / PipelineRegressor wrap a Pipeline in their field 1; Pipeline holds
        // its models in field 1.
        var pipelineBytes = data
        if field != 202 {
            try ProtoReader.forEachField(in: data) { f, v in if f == 1 { pipelineBytes = v.bytes } }
        }
        var models: [ModelSpec] = []
        try ProtoReader.forEachField(in: pipelineBytes) { f, v in
            if f == 1 { models.append(try ModelSpec(message: v.bytes)) }
        }
        switch field {
        case 200: return .pipelineClassifier(models)
        case 201: return .pipelineRegressor(models)
        default: return .pipeline(models)
        }
    }

    static func scaler(_ data: ArraySlice<UInt8>) throws -> ModelType {
        var shift: [Double] = [], scale: [Double] = []
        try ProtoReader.forEachField(in: data) { f, v in
            if f == 1 { try Repeated.doubles(v, into: &shift) }
            if f == 2 { try Repeated.doubles(v, into: &scale) }
        }
        return .scaler(shift: shift, scale: scale)
    }

    static func network(_ data: ArraySlice<UInt8>) throws -> NeuralNetwork {
        var nn = NeuralNetwork()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1: nn.layers.append(try layer(v.bytes))
            case 100, 101: nn.classLabels = try classLabels(f, v.bytes)
            case 200: nn.labelProbabilityLayerName = v.string
            case 10: nn.updateParams = try updateParameters(v.bytes)
            default: break
            }
        }
        return nn
    }

    /// A StringVector (field 100 of a classifier) or Int64Vector (101): each holds its values in field 1.
    static func classLabels(_ field: Int, _ data: ArraySlice<UInt8>) throws -> ClassLabels {
        var strings: [String] = [], ints: [Int] = []
        try ProtoReader.forEachField(in: data) { f, v in
            guard f == 1 else { return }
            if field == 100 { strings.append(v.string) } else { try Repeated.varints(v, into: &ints) }
        }
        return field == 100 ? .strings(strings) : .ints(ints)
    }

    /// KNearestNeighborsClassifier: nearestNeighborsIndex = 1, numberOfNeighbors = 3 (an Int64Parameter),
    /// string/int64 class labels = 100/101, defaultStringLabel = 110, uniform/inverse-distance weighting
    /// = 200/210. NearestNeighborsIndex: numberOfDimensions = 1, floatSamples = 2 (FloatVector: its
    /// floats in field 1), linear/kd-tree index = 100/110, squaredEuclideanDistance = 200.
    static func nearestNeighbors(_ data: ArraySlice<UInt8>) throws -> NearestNeighbors {
        var k = NearestNeighbors()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1:
                try ProtoReader.forEachField(in: v.bytes) { xf, xv in
                    switch xf {
                    case 1: k.dimensions = xv.int
                    case 2:
                        var sample: [Double] = []
                        try ProtoReader.forEachField(in: xv.bytes) { sf, sv in if sf == 1 { try Repeated.floats(sv, into: &sample) } }
                        k.samples.append(sample)
                    case 200: k.squaredEuclidean = true
                    default: break
                    }
                }
            case 3: k.neighbors = try defaultValue(v.bytes)?.int ?? 0
            case 100, 101: k.labels = try classLabels(f, v.bytes)
            case 110: k.defaultLabel = v.string
            case 210: k.inverseDistanceWeighting = true
            default: break
            }
        }
        return k
    }

    /// The `defaultValue` (field 1) of a DoubleParameter or Int64Parameter message.
    static func defaultValue(_ data: ArraySlice<UInt8>) throws -> ProtoValue? {
        var found: ProtoValue?
        try ProtoReader.forEachField(in: data) { f, v in if f == 1 { found = v } }
        return found
    }

    static func updateParameters(_ data: ArraySlice<UInt8>) throws -> UpdateParametersSpec {
        var u = UpdateParametersSpec()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1:  // LossLayer: categoricalCrossEntropyLossLayer = 10, meanSquaredErrorLossLayer = 11; input = 1
                try ProtoReader.forEachField(in: v.bytes) { lf, lv in
                    guard lf == 10 || lf == 11 else { return }
                    var input = ""
                    try ProtoReader.forEachField(in: lv.bytes) { pf, pv in if pf == 1 { input = pv.string } }
                    u.losses.append(lf == 10 ? .crossEntropy(input: input) : .meanSquaredError(input: input))
                }
            case 2:  // Optimizer: sgdOptimizer = 10, adamOptimizer = 11
                try ProtoReader.forEachField(in: v.bytes) { of, ov in
                    var values: [Int: ProtoValue] = [:]
                    try ProtoReader.forEachField(in: ov.bytes) { pf, pv in values[pf] = try defaultValue(pv.bytes) }
                    let lr = values[1]?.double ?? 0, batch = values[2]?.int ?? 0
                    if of == 10 { u.optimizer = .sgd(learningRate: lr, miniBatchSize: batch, momentum: values[3]?.double ?? 0) }
                    if of == 11 {
                        u.optimizer = .adam(learningRate: lr, miniBatchSize: batch, beta1: values[3]?.double ?? 0,
                                            beta2: values[4]?.double ?? 0, eps: values[5]?.double ?? 0)
                    }
                }
            case 3: u.epochs = try defaultValue(v.bytes)?.int ?? 0
            default: break
            }
        }
        return u
    }

    static func layer(_ data: ArraySlice<UInt8>) throws -> Layer {
        var l = Layer()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1: l.name = v.string
            case 2: l.inputs.append(v.string)
            case 3: l.outputs.append(v.string)
            case 10: l.isUpdatable = v.bool
            case 130: l.kind = .activation(try activation(v.bytes))
            case 140: l.kind = try innerProduct(v.bytes, layer: l.name)
            case 160: l.kind = try batchnorm(v.bytes, layer: l.name)
            case 175: l.kind = .softmax
            case 245: l.kind = try scale(v.bytes, layer: l.name)
            case 250:
                var b = Weights()
                try ProtoReader.forEachField(in: v.bytes) { bf, bv in if bf == 2 { b = try weights(bv.bytes, "\(l.name).bias") } }
                l.kind = .bias(b)
            case 301: l.kind = .flatten
            case 100...2000: l.kind = .other(field: f)
            default: break
            }
        }
        return l
    }

    static func activation(_ data: ArraySlice<UInt8>) throws -> Activation {
        var a = Activation.other(field: 0)
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 10: a = .relu
            case 40: a = .sigmoid
            case 30: a = .tanh
            case 5:
                var alpha = 0.0, beta = 0.0
                try ProtoReader.forEachField(in: v.bytes) { pf, pv in
                    if pf == 1 { alpha = pv.float }
                    if pf == 2 { beta = pv.float }
                }
                a = .linear(alpha: alpha, beta: beta)
            case 15:
                var alpha = 0.0
                try ProtoReader.forEachField(in: v.bytes) { pf, pv in if pf == 1 { alpha = pv.float } }
                a = .leakyReLU(alpha: alpha)
            default: a = .other(field: f)
            }
        }
        return a
    }

    static func innerProduct(_ data: ArraySlice<UInt8>, layer: String) throws -> LayerKind {
        var inputs = 0, outputs = 0, hasBias = false, int8 = false
        var w = Weights(), b = Weights()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1: inputs = v.int
            case 2: outputs = v.int
            case 10: hasBias = v.bool
            case 20: w = try weights(v.bytes, "\(layer).weights")
            case 21: b = try weights(v.bytes, "\(layer).bias")
            case 22: int8 = v.bool
            default: break
            }
        }
        return .innerProduct(inputs: inputs, outputs: outputs, weights: w, bias: hasBias ? b : nil, int8Dynamic: int8)
    }

    static func batchnorm(_ data: ArraySlice<UInt8>, layer: String) throws -> LayerKind {
        var channels = 0, epsilon = 0.0, meanVar = false, instance = false
        var gamma = Weights(), beta = Weights(), mean = Weights(), variance = Weights()
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1: channels = v.int
            case 5: meanVar = v.bool
            case 6: instance = v.bool
            case 10: epsilon = v.float
            case 15: gamma = try weights(v.bytes, "\(layer).gamma")
            case 16: beta = try weights(v.bytes, "\(layer).beta")
            case 17: mean = try weights(v.bytes, "\(layer).mean")
            case 18: variance = try weights(v.bytes, "\(layer).variance")
            default: break
            }
        }
        return .batchnorm(channels: channels, epsilon: epsilon, gamma: gamma, beta: beta, mean: mean, variance: variance,
                          computeMeanVar: meanVar, instanceNormalization: instance)
    }

    static func scale(_ data: ArraySlice<UInt8>, layer: String) throws -> LayerKind {
        var s = Weights(), b = Weights(), hasBias = false
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 2: s = try weights(v.bytes, "\(layer).scale")
            case 3: hasBias = v.bool
            case 5: b = try weights(v.bytes, "\(layer).bias")
            default: break
            }
        }
        return .scale(scale: s, bias: hasBias ? b : nil)
    }

    /// WeightParams: floatValue (1, packed float), float16Value (2), rawValue (30, float32 bytes);
    /// int8RawValue (31) and quantization (40) are refused as the Python runtime refuses them.
    static func weights(_ data: ArraySlice<UInt8>, _ what: String) throws -> Weights {
        var w = Weights()
        var half: ArraySlice<UInt8> = [], raw: ArraySlice<UInt8> = []
        try ProtoReader.forEachField(in: data) { f, v in
            switch f {
            case 1: try Repeated.floats(v, into: &w.values)
            case 2: half = v.bytes
            case 30: raw = v.bytes
            case 31 where !v.bytes.isEmpty, 40: throw ModelSpecError.unsupportedWeights(what)
            case 50: w.isUpdatable = v.bool
            default: break
            }
        }
        if w.values.isEmpty && !half.isEmpty { w.values = try halfFloats(half) }
        if w.values.isEmpty && !raw.isEmpty { try Repeated.floats(.bytes(raw), into: &w.values) }
        return w
    }

    /// IEEE 754 binary16, little-endian, widened exactly (no Float16 type: unavailable on some hosts).
    static func halfFloats(_ raw: ArraySlice<UInt8>) throws -> [Double] {
        guard raw.count % 2 == 0 else { throw ProtoError.badLength(raw.count, offset: 0) }
        var out: [Double] = []
        var i = raw.startIndex
        while i < raw.endIndex {
            let bits = UInt16(raw[i]) | UInt16(raw[i + 1]) << 8
            let sign: Double = bits & 0x8000 != 0 ? -1 : 1
            let exponent = Int((bits >> 10) & 0x1F), fraction = Double(bits & 0x3FF)
            switch exponent {
            case 0: out.append(sign * fraction * pow(2, -24))
            case 31: out.append(fraction == 0 ? sign * .infinity : .nan)
            default: out.append(sign * (1 + fraction / 1024) * pow(2, Double(exponent - 15)))
            }
            i += 2
        }
        return out
    }
}
