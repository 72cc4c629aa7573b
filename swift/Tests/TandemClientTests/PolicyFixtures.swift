import Foundation
@testable import TandemClient

/// What the Python side computed (Fixtures/policy_fixtures.json, written by Fixtures/make_fixtures.py).
struct PolicyFixtures: Decodable {
    struct Case: Decodable { let column, value: String; let level: Int; let expected: String }
    struct Policy: Decodable {
        let `public`: JSONValue
        let scales: [Double]
        let keep_probability: Double
        let window_basic_epsilon: Double
        let basic_affordable: Int
        func policy() throws -> SharingPolicy { try SharingPolicy.load(json: JSONEncoder().encode(`public`)) }
    }
    struct Clip: Decodable { let input: [[Double]]; let expected: [[Double]] }
    let feature_names: [String]
    let classes: [String]
    let generalization: [Case]
    let policies: [Policy]
    let clip: Clip
    let gzip_hex: String
    let identity: Identity
    let pseudonymized_public: JSONValue

    struct Identity: Decodable {
        let key, user, pseudonym, batch_id, x963_hex, install_id, message: String
        let window_keys, window_ids: [String]
    }

    static let shared: PolicyFixtures = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("policy_fixtures.json")
        return try! JSONDecoder().decode(PolicyFixtures.self, from: Data(contentsOf: url))
    }()
}

/// A deterministic, non-secure source for tests that need repeatable draws (SplitMix64).
struct SplitMix: RandomSource {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
