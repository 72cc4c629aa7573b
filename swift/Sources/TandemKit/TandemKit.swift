// TandemKit: featurization, sharing, update policy, backup and release checks for an app's device.
public enum TandemKit {
    /// The version of the package; releases' XCTests print it when they fail.
    public static let version = "0.1.0"
}
