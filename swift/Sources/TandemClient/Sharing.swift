import Foundation
import TandemSecurity

/// One of a user's windows, featurized on the device, ready to be shared.
public struct DeviceWindow {
    public var key: String  // stable per window on this device (e.g. "0:1024"); never leaves it
    public var capturedAtMs: Int64
    public var features: [Double]
    public var label: JSONValue  // a class name, or a number for a regression task

    public init(key: String, capturedAtMs: Int64, features: [Double], label: JSONValue) {
        self.key = key; self.capturedAtMs = capturedAtMs; self.features = features; self.label = label
    }
}

/// What a user shares, as wire batches: `share_user` in `tandem/fleet/sharing.py` for an app. The same
/// windows give the same pseudonym, window ids, batch cuts and (without dp noise) the same rows as the
/// Python simulator; the gateway turns them into the same parquet batch.
public struct SharingClient {
    public struct Prepared {
        public var batches: [WireBatch]
        public var pseudonym: String
        public var withheld: Int
        public var refusal: String?
    }

    public let task: String
    public let featureNames: [String]
    public let classes: [String]?  // nil: a regression task (numeric labels)
    public let policy: SharingPolicy
    public let policyJSON: JSONValue
    public let pseudonymKey: Data
    public let keyId: String
    public var batchSize = 64

    /// `spec`: the release's feature_spec.json (task tag, feature names, labels); `policyJSON`: the
    /// sharing policy's public JSON; `pseudonymKey`: the app's HMAC key (TANDEM_PSEUDONYM_KEY's bytes).
    public init(spec: Data, policyJSON: Data, pseudonymKey: Data, keyId: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: spec) as? [String: Any],
              let task = object["task"] as? String, let names = object["feature_names"] as? [String] else {
            throw ClientError.policy("the feature spec has no task tag or feature names: pass a release's feature_spec.json")
        }
        guard !pseudonymKey.isEmpty else { throw ClientError.policy("a pseudonymization key is required (TANDEM_PSEUDONYM_KEY)") }
        self.task = task
        self.featureNames = names
        self.classes = object["labels"] as? [String]
        self.policy = try SharingPolicy.load(json: policyJSON)
        self.policyJSON = try JSONDecoder().decode(JSONValue.self, from: policyJSON)
        self.pseudonymKey = pseudonymKey
        self.keyId = keyId
        if policy.has("dp") && classes == nil {
            throw ClientError.policy("the dp form randomizes class labels; task \(task) has a numeric target (share it pseudonymized, anonymized or encrypted)")
        }
    }

    /// The user's pseudonym (TandemSecurity: keyed HMAC-SHA256, as `tandem/privacy/pseudonyms.py`).
    public func pseudonym(of userId: String) throws -> String {
        try Pseudonyms.pseudonymize(userId, key: pseudonymKey)
    }

    public static func windowId(pseudonym: String, windowKey: String) -> String {
        String(TandemCrypto.sha256(Data("\(pseudonym)|\(windowKey)".utf8)).tandemHex.prefix(32))
    }

    public static func batchId(pseudonym: String, windowIds: [String]) -> String {
        String(TandemCrypto.sha256(Data(([pseudonym] + windowIds).joined(separator: "|").utf8)).tandemHex.prefix(24))
    }

    /// The user's windows as wire batches in capture order, in the policy's modified form. Under dp the
    /// ledger (`ledger`) admits what the budget allows and is charged here; save it before uploading.
    public func prepare(userId: String, device: [String: String], windows: [DeviceWindow], ledger: inout PrivacyLedger?,
                        createdAt: Date = Date()) throws -> Prepared {
        let pseudonym = try pseudonym(of: userId)
        let ordered = windows.enumerated().sorted { ($0.element.capturedAtMs, $0.offset) < ($1.element.capturedAtMs, $1.offset) }.map(\.element)
        var rows = ordered.map { (window: $0, id: Self.windowId(pseudonym: pseudonym, windowKey: $0.key)) }
        var refusal: String?
        var withheld = 0
        if policy.has("dp") {
            guard var book = ledger else { throw ClientError.ledger("sharing under dp needs the device's privacy ledger") }
            let (allowed, refused) = try book.admit(policy: policy, windowIds: rows.map(\.id))
            let keep = Set(allowed)
            withheld = rows.count - allowed.count
            rows = rows.filter { keep.contains($0.id) }
            refusal = refused.map { "device \(pseudonym.prefix(8)): \($0)" }
            ledger = book
        }
        let dp = policy.has("dp") ? try DPTransform(policy: policy, featureNames: featureNames, classes: classes ?? []) : nil
        var quasi = device
        if policy.has("anonymized") {
            for (column, value) in device where Generalization.levels[column] != nil {
                quasi[column] = try Generalization.generalize(column, value, level: policy.deviceLevels[column] ?? 1)
            }
        }
        let stamp = WireBatch.timestamp(createdAt)
        var batches: [WireBatch] = []
        for start in stride(from: 0, to: rows.count, by: batchSize) {
            let part = Array(rows[start..<min(start + batchSize, rows.count)])
            var features = part.map(\.window.features)
            var labels = part.map(\.window.label)
            for (i, row) in part.enumerated() {
                guard row.window.features.count == featureNames.count else {
                    throw ClientError.policy("window \(i) has \(row.window.features.count) features, the spec \(featureNames.count)")
                }
                if let dp, case .string(let label) = row.window.label {
                    var random = KeyedStream(key: pseudonymKey, fingerprint: policy.fingerprint, windowId: row.id)
                    let (x, y) = try dp.privatize(features: row.window.features, label: label, random: &random)
                    features[i] = x
                    labels[i] = .string(y)
                }
            }
            let ids = part.map(\.id)
            var columns: [String: WireColumn] = [
                "window_id": .strings(ids),
                "captured_at": .milliseconds(part.map(\.window.capturedAtMs)),
                "label": try Self.labelColumn(labels, classification: classes != nil),
            ]
            for (j, name) in featureNames.enumerated() { columns[name] = .numbers(features.map { $0[j] }) }
            for (column, value) in quasi { columns[column] = .strings(Array(repeating: value, count: part.count)) }
            let batchId = Self.batchId(pseudonym: pseudonym, windowIds: ids)
            batches.append(try WireBatch(header: .init(task: task, policy: policyJSON, pseudonym: pseudonym, keyId: keyId,
                                                        clientBatchId: "\(batchId).\(Int(createdAt.timeIntervalSince1970))",
                                                        createdAt: stamp, rowCount: part.count), columns: columns))
        }
        return Prepared(batches: batches, pseudonym: pseudonym, withheld: withheld, refusal: refusal)
    }

    static func labelColumn(_ labels: [JSONValue], classification: Bool) throws -> WireColumn {
        if classification {
            return .strings(try labels.map { guard case .string(let s) = $0 else { throw ClientError.wire("a classification label must be a class name") }; return s })
        }
        return .numbers(try labels.map { guard case .number(let x) = $0 else { throw ClientError.wire("a regression label must be a number") }; return x })
    }
}
