// A typecheck-only stand-in for Apple's CoreML (signatures as documented), to compile TandemModel's
// `#if canImport(CoreML)` code on Linux. Nothing here runs.
import Foundation
public protocol MLFeatureProvider { func featureValue(for featureName: String) -> MLFeatureValue? }
public protocol MLBatchProvider {}
public protocol MLWritable {}
public enum MLFeatureType { case invalid, int64, double, string, image, multiArray, dictionary, sequence }
public enum MLMultiArrayDataType { case double, float32, int32 }
public class MLMultiArrayConstraint { public var shape: [NSNumber] { [] } }
public class MLFeatureDescription { public var name: String { "" }; public var type: MLFeatureType { .invalid }; public var multiArrayConstraint: MLMultiArrayConstraint? { nil } }
public class MLModelDescription {
    public var inputDescriptionsByName: [String: MLFeatureDescription] { [:] }
    public var outputDescriptionsByName: [String: MLFeatureDescription] { [:] }
    public var trainingInputDescriptionsByName: [String: MLFeatureDescription] { [:] }
    public var predictedFeatureName: String? { nil }
    public var predictedProbabilitiesName: String? { nil }
    public var classLabels: [Any]? { nil }
    public var metadata: [MLModelMetadataKey: Any] { [:] }
}
public struct MLModelMetadataKey: Hashable, RawRepresentable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let creatorDefinedKey = MLModelMetadataKey(rawValue: "MLModelCreatorDefinedKey")
}
public class MLMultiArray {
    public init(shape: [NSNumber], dataType: MLMultiArrayDataType) throws {}
    public var count: Int { 0 }
    public subscript(index: Int) -> NSNumber { get { 0 } set {} }
}
public class MLFeatureValue {
    public init(multiArray: MLMultiArray) {}
    public init(string: String) {}
    public var dictionaryValue: [AnyHashable: NSNumber] { [:] }
    public var stringValue: String { "" }
    public var multiArrayValue: MLMultiArray? { nil }
    public var doubleValue: Double { 0 }
}
public class MLDictionaryFeatureProvider: MLFeatureProvider {
    public init(dictionary: [String: Any]) throws {}
    public func featureValue(for featureName: String) -> MLFeatureValue? { nil }
}
public class MLArrayBatchProvider: MLBatchProvider { public init(array: [MLFeatureProvider]) {} }
public struct MLParameterKey: Hashable {
    public static let epochs = MLParameterKey(), learningRate = MLParameterKey(), miniBatchSize = MLParameterKey(), shuffle = MLParameterKey()
}
public struct MLMetricKey: Hashable { public static let lossValue = MLMetricKey(), epochIndex = MLMetricKey() }
public class MLModelConfiguration { public init() {}; public var parameters: [MLParameterKey: Any]? }
public class MLModel {
    public init(contentsOf url: URL) throws {}
    public init(contentsOf url: URL, configuration: MLModelConfiguration) throws {}
    public var modelDescription: MLModelDescription { MLModelDescription() }
    public func prediction(from input: MLFeatureProvider) throws -> MLFeatureProvider { try MLDictionaryFeatureProvider(dictionary: [:]) }
}
public struct MLUpdateProgressEvent: OptionSet {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let trainingBegin = MLUpdateProgressEvent(rawValue: 1), epochEnd = MLUpdateProgressEvent(rawValue: 2), miniBatchEnd = MLUpdateProgressEvent(rawValue: 4)
}
public class MLUpdateContext {
    public var task: MLUpdateTask { fatalError() }
    public var model: MLModel & MLWritable { fatalError() }
    public var event: MLUpdateProgressEvent { .epochEnd }
    public var metrics: [MLMetricKey: Any] { [:] }
}
public class MLUpdateProgressHandlers {
    public init(forEvents interestedEvents: MLUpdateProgressEvent, progressHandler: ((MLUpdateContext) -> Void)?, completionHandler: @escaping (MLUpdateContext) -> Void) {}
}
public class MLUpdateTask {
    public init(forModelAt modelURL: URL, trainingData: MLBatchProvider, configuration: MLModelConfiguration?, progressHandlers: MLUpdateProgressHandlers) throws {}
    public init(forModelAt modelURL: URL, trainingData: MLBatchProvider, configuration: MLModelConfiguration?, completionHandler: @escaping (MLUpdateContext) -> Void) throws {}
    public var error: Error? { nil }
    public func resume() {}
    public func cancel() {}
}
