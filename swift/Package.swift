// swift-tools-version:5.9
// TandemKit: the app's half of Tandem. Only the toolchain's modules and system libraries:
// on Apple platforms CryptoKit / Compression / Core ML; on Linux OpenSSL's libcrypto and zlib
// (Debian's libssl-dev and zlib1g-dev) through system-library targets.
import PackageDescription

#if os(Linux)
let systemTargets: [Target] = [
    .systemLibrary(name: "CTandemCrypto", path: "Sources/CTandemCrypto",
                   providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CTandemZlib", path: "Sources/CTandemZlib",
                   providers: [.apt(["zlib1g-dev"])]),
]
let kitDependencies: [Target.Dependency] = ["CTandemCrypto", "CTandemZlib"]
#else
let systemTargets: [Target] = []
let kitDependencies: [Target.Dependency] = []
#endif

let package = Package(
    name: "TandemKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "TandemKit", targets: ["TandemKit"]),
        .executable(name: "tandem-device", targets: ["tandem-device"]),
    ],
    targets: systemTargets + [
        .target(name: "TandemKit", dependencies: kitDependencies),
        .executableTarget(name: "tandem-device", dependencies: ["TandemKit"]),
        .testTarget(name: "TandemKitTests", dependencies: ["TandemKit"],
                    resources: [.copy("Fixtures")]),
    ]
)
