import Foundation
import TandemKit

// tandem-device share --gateway URL --spec feature_spec.json --windows FILE --policy POLICY.json
//                     [--user ID] [--devices-dir DIR] [--batch-size 64] [--attempts 5]
// FILE: {"user_id": "...", "device": {"device_model": ..., ...},
//        "windows": [{"key": "0:1024", "captured_at": <ms>, "label": "walking", "window": [[...]]}, ...]}
// (a window may carry "features" instead of "window": already featurized). Featurizes the raw windows
// with TandemFeatures, applies the policy, and uploads the batches through the gateway: enrolls the
// install, signs each request, retries with backoff, one Idempotency-Key per batch.
// Secrets from the environment only: TANDEM_PSEUDONYM_KEY (+ TANDEM_PSEUDONYM_KEY_ID, default k1),
// TANDEM_DEVICE_KEY (the install's P-256 key, 64 hex; unset: a fresh install for this run),
// TANDEM_ENCRYPTION_KEY (+ TANDEM_ENCRYPTION_KEY_ID, default e1) for the encrypted form.
// The privacy ledger (dp) lives in --devices-dir/<user>/privacy_ledger.json. Prints a JSON summary.
func shareCommand(_ args: [String]) throws -> Int32 {
    let usage = "usage: share --gateway URL --spec FILE --windows FILE --policy FILE [--user ID] [--devices-dir DIR] [--batch-size N] [--attempts N]"
    var options: [String: String] = [:]
    var i = 0
    while i < args.count {
        guard ["--gateway", "--spec", "--windows", "--policy", "--user", "--devices-dir", "--batch-size", "--attempts"].contains(args[i]), i + 1 < args.count else {
            throw ClientError.policy("bad option \(args[i]): \(usage)")
        }
        options[args[i]] = args[i + 1]
        i += 2
    }
    guard let gatewayText = options["--gateway"], let gateway = URL(string: gatewayText), gateway.scheme != nil,
          let specPath = options["--spec"], let windowsPath = options["--windows"], let policyPath = options["--policy"] else {
        throw ClientError.policy(usage)
    }
    let env = ProcessInfo.processInfo.environment
    guard let pseudonymKey = env["TANDEM_PSEUDONYM_KEY"], !pseudonymKey.isEmpty else {
        throw ClientError.policy("TANDEM_PSEUDONYM_KEY is not set: export the app's pseudonymization key (a secret) in the environment")
    }
    let specURL = URL(fileURLWithPath: specPath)
    var client = try SharingClient(spec: readShareFile(specPath, "feature spec"), policyJSON: readShareFile(policyPath, "policy"),
                                   pseudonymKey: Data(pseudonymKey.utf8), keyId: env["TANDEM_PSEUDONYM_KEY_ID"] ?? "k1")
    if let size = options["--batch-size"] {
        guard let n = Int(size), n > 0 else { throw ClientError.policy("--batch-size needs a positive integer") }
        client.batchSize = n
    }
    let input = try ShareInput.read(windowsPath, featurizer: { try Featurizer(specURL: specURL) })
    guard let userId = options["--user"] ?? input.userId else { throw ClientError.policy("no user id: pass --user or put user_id in the windows file") }

    var ledger: PrivacyLedger?
    if client.policy.has("dp") {
        guard let dir = options["--devices-dir"] else { throw ClientError.ledger("sharing under dp needs --devices-dir (where the user's privacy ledger lives)") }
        ledger = try PrivacyLedger.load(devicesDirectory: URL(fileURLWithPath: dir), user: userId)
    }
    let prepared = try client.prepare(userId: userId, device: input.device, windows: input.windows, ledger: &ledger)
    try ledger?.save()  // charged before anything leaves the device: a failed upload never under-counts

    var sealer: ((Data) throws -> Data)?
    if client.policy.has("encrypted") {
        sealer = try batchSealer(env: env, expectedKeyId: client.policy.encryptionKeyId)
    }
    let signer: TandemCrypto.P256Signer
    if let hex = env["TANDEM_DEVICE_KEY"] {
        guard let raw = Data(tandemHex: hex), raw.count == 32 else { throw ClientError.upload("TANDEM_DEVICE_KEY must be 64 hex characters (a P-256 private key)") }
        signer = try TandemCrypto.P256SigningKey(rawRepresentation: raw)
    } else {
        signer = try TandemCrypto.P256SigningKey()
    }
    let uploader = GatewayUploader(gateway: gateway, signer: signer)
    if let text = options["--attempts"] {
        guard let n = Int(text), n > 0 else { throw ClientError.policy("--attempts needs a positive integer") }
        uploader.maxAttempts = n
    }
    if !prepared.batches.isEmpty { try uploader.enroll() }
    var results: [[String: Any]] = []
    for batch in prepared.batches {
        var body = try batch.body()
        if let sealer { body = try sealer(body) }
        let answer = try uploader.upload(body: body, idempotencyKey: batch.header.clientBatchId, sealed: sealer != nil)
        results.append(["status": answer.json["status"] ?? "", "batch": answer.json["batch"] ?? "", "rows": batch.header.rowCount,
                        "attempts": answer.attempts])
    }
    var summary: [String: Any] = ["install": uploader.installId, "pseudonym_prefix": String(prepared.pseudonym.prefix(8)),
                                  "policy": client.policy.name, "windows": prepared.batches.reduce(0) { $0 + $1.header.rowCount },
                                  "withheld": prepared.withheld, "batches": results]
    if let refusal = prepared.refusal {
        summary["refusal"] = refusal
        FileHandle.standardError.write(Data((refusal + "\n").utf8))
    }
    print(String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self))
    return 0
}

/// The windows file of `share`. Read with `JSONDecoder` (correctly rounded doubles): Foundation's
/// `JSONSerialization` on Linux reads long numbers through `Decimal` and can lose the last bit.
struct ShareInput: Decodable {
    struct Item: Decodable {
        var key: String
        var captured_at: Int64
        var label: JSONValue
        var window: [[Double]]?
        var features: [Double]?
    }

    var user_id: String?
    var device: [String: String]?
    var windows: [Item]

    var userId: String? { user_id }

    static func read(_ path: String, featurizer makeFeaturizer: () throws -> Featurizer) throws -> (userId: String?, device: [String: String], windows: [DeviceWindow]) {
        let input: ShareInput
        do {
            input = try JSONDecoder().decode(ShareInput.self, from: readShareFile(path, "windows file"))
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.wire("\(path): expected {\"user_id\", \"device\", \"windows\": [{key, captured_at (ms), label, window | features}]}")
        }
        var featurizer: Featurizer?
        let windows = try input.windows.enumerated().map { n, item -> DeviceWindow in
            let features: [Double]
            if let given = item.features {
                features = given
            } else if let raw = item.window {
                if featurizer == nil { featurizer = try makeFeaturizer() }
                features = try featurizer!.features(window: raw)
            } else {
                throw ClientError.wire("\(path): window \(n) has neither window ([t][c]) nor features")
            }
            return DeviceWindow(key: item.key, capturedAtMs: item.captured_at, features: features, label: item.label)
        }
        return (input.user_id, input.device ?? [:], windows)
    }
}

/// A file `share` reads, or one line saying which one could not be read.
func readShareFile(_ path: String, _ what: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ClientError.policy("cannot read the \(what) \(path): no such file or not readable")
    }
    return data
}
