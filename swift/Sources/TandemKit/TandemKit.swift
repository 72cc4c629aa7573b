// TandemKit: one import for an app; each module has one job (see Package.swift).
@_exported import TandemFeatures
@_exported import TandemSecurity
@_exported import TandemModel
@_exported import TandemClient

public enum TandemKit {
    /// The package's version; printed by `tandem-device --version`.
    public static let version = "0.1.0"
}
