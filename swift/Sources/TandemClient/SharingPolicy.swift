import Foundation

/// A sharing policy as the server publishes it (`SharingPolicy.public_dict()` in
/// `tandem/privacy/policy.py`: batch metadata, release manifests). Holds no secret.
public struct SharingPolicy: Codable, Equatable {
    public static let forms = ["pseudonymized", "anonymized", "dp", "encrypted"]  // canonical order in names

    public var name: String
    public var version: String
    public var forms: [String]
    public var k: Int
    public var deviceLevels: [String: Int]
    public var noise: String
    public var epsilonFeatures: Double
    public var epsilonLabels: Double
    public var delta: Double
    public var userBudgetEpsilon: Double
    public var encryptionKeyId: String?
    /// Digest of what decides a window's shared values; ledger charges are per (window, fingerprint).
    public var fingerprint: String
    /// [lo, hi] per feature name under the dp form (present when the policy has it).
    public var clipBounds: [String: [Double]]?
    /// The privacy events of one shared window (the ledger's charge); present under dp.
    public var mechanism: Mechanism?

    public struct Mechanism: Codable, Equatable {
        public var windowEvents: [PrivacyEvent]
        enum CodingKeys: String, CodingKey { case windowEvents = "window_events" }
    }

    enum CodingKeys: String, CodingKey {
        case name, version, forms, k, noise, delta, fingerprint, mechanism
        case deviceLevels = "device_levels", epsilonFeatures = "epsilon_features", epsilonLabels = "epsilon_labels"
        case userBudgetEpsilon = "user_budget_epsilon", encryptionKeyId = "encryption_key_id", clipBounds = "clip_bounds"
    }

    /// The policy from its public JSON; refuses a name that is not made of Tandem's forms or a dp
    /// policy without clip bounds (the device must never guess them).
    public static func load(json data: Data) throws -> SharingPolicy {
        let policy: SharingPolicy
        do {
            policy = try JSONDecoder().decode(SharingPolicy.self, from: data)
        } catch {
            throw ClientError.policy("not a sharing policy's public JSON (\(Self.describe(error))): export it with SharingPolicy.public_json() on the server")
        }
        try policy.validate()
        return policy
    }

    public func has(_ form: String) -> Bool { forms.contains(form) }

    func validate() throws {
        let unknown = forms.filter { !Self.forms.contains($0) }
        guard unknown.isEmpty else { throw ClientError.policy("unknown form(s) \(unknown) in policy \(name)") }
        guard name == forms.joined(separator: "+") + "/" + version else {
            throw ClientError.policy("policy name \(name) does not match its forms and version")
        }
        if has("dp") {
            guard let bounds = clipBounds, !bounds.isEmpty else { throw ClientError.policy("policy \(name) has the dp form but no clip_bounds") }
            for (feature, b) in bounds where !(b.count == 2 && b[0].isFinite && b[1].isFinite && b[0] < b[1]) {
                throw ClientError.policy("policy \(name): clip bounds of \(feature) are not a finite [lo, hi] with lo < hi")
            }
            guard noise == "laplace" || noise == "gaussian" else { throw ClientError.policy("policy \(name): unknown noise \(noise)") }
            guard epsilonFeatures > 0, epsilonLabels > 0, delta > 0, delta < 1 else {
                throw ClientError.policy("policy \(name): epsilons must be > 0 and delta within (0, 1)")
            }
            // what the ledger charges per window: without it a device could share past any budget
            guard let events = mechanism?.windowEvents, !events.isEmpty else {
                throw ClientError.policy("policy \(name) has the dp form but no mechanism.window_events: the ledger could not charge it")
            }
            for event in events { _ = try event.pureEpsilon() }
        }
        if has("anonymized") {
            for (column, level) in deviceLevels {
                guard let top = Generalization.levels[column], (1...top).contains(level) else {
                    throw ClientError.policy("policy \(name): device level \(level) of \(column) is not within the hierarchy")
                }
            }
        }
    }

    /// The events charged to the ledger per shared window (none without dp).
    public func windowEvents() -> [PrivacyEvent] {
        has("dp") ? mechanism?.windowEvents ?? [] : []
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing \(key.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "bad value at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(error)"
        }
    }
}
