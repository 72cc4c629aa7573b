// swift-tools-version:5.9
// TandemKit: the app's half of Tandem. Only the toolchain's modules and system libraries:
// on Apple platforms CryptoKit / Compression / Core ML; on Linux OpenSSL's libcrypto and zlib
// (Debian's libssl-dev and zlib1g-dev) through system-library targets.
//
// One product, `TandemKit`, re-exporting four modules with one job each:
//   TandemFeatures  the featurizer that interprets a release's feature_spec.json
//   TandemSecurity  hashes, signatures, pseudonyms, the sealed container, backups, release checks
//   TandemModel     the .mlmodel: Core ML on Apple platforms, a spec interpreter on Linux; update policy
//   TandemClient    sharing policies, the privacy ledger, the wire format and the gateway uploader
import PackageDescription

#if os(Linux)
let systemTargets: [Target] = [
    .systemLibrary(name: "CTandemCrypto", path: "Sources/CTandemCrypto", providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CTandemZlib", path: "Sources/CTandemZlib", providers: [.apt(["zlib1g-dev"])]),
]
let cryptoDependencies: [Target.Dependency] = ["CTandemCrypto"]
let zlibDependencies: [Target.Dependency] = ["CTandemZlib"]
#else
let systemTargets: [Target] = []
let cryptoDependencies: [Target.Dependency] = []
let zlibDependencies: [Target.Dependency] = []
#endif

let package = Package(
    name: "TandemKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "TandemKit", targets: ["TandemKit"]),
        .executable(name: "tandem-device", targets: ["tandem-device"]),
    ],
    targets: systemTargets + [
        .target(name: "TandemFeatures"),
        .target(name: "TandemSecurity", dependencies: cryptoDependencies),
        .target(name: "TandemModel", dependencies: ["TandemFeatures"]),
        .target(name: "TandemClient", dependencies: ["TandemFeatures", "TandemSecurity"] + zlibDependencies),
        .target(name: "TandemKit", dependencies: ["TandemFeatures", "TandemSecurity", "TandemModel", "TandemClient"]),
        .executableTarget(name: "tandem-device", dependencies: ["TandemKit"]),
        .testTarget(name: "TandemFeaturesTests", dependencies: ["TandemFeatures"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TandemSecurityTests", dependencies: ["TandemSecurity"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TandemModelTests", dependencies: ["TandemModel"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TandemClientTests", dependencies: ["TandemClient"], resources: [.copy("Fixtures")]),
    ]
)
