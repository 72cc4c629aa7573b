import Foundation

/// What is wrong with a spec or a window, in one line an app developer can act on.
public struct FeatureError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
